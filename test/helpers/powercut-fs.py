#!/usr/bin/python3
"""A FUSE file system that loses, on a "power cut", every write not yet fsynced.

    powercut-fs.py BACKING MOUNTPOINT

File contents written through MOUNTPOINT are kept in memory (as a page cache would) until the file
is fsynced (fsync or fdatasync); only then are they written to BACKING and fsynced there. Reads see
the latest writes. The line "cut" on stdin is the power cut (a signal handler would not run while
libfuse holds the main thread): everything not synced is dropped at once, later writes and syncs
fail with EIO, and the file system unmounts and exits. End of stdin (the test gone) cuts as well. BACKING then holds exactly what a
disk would hold after power loss under this model.

Metadata (create, unlink, rename, mkdir, chmod) is applied to BACKING at once, as a journalling
file system that commits metadata eagerly would: the test is about file contents that an
application acknowledged before they were synced (SQLite's synchronous setting).

It prints "ready" on stdout once mounted. Used by test/e2e/power-cut.test.ts; needs fuse3 and
python3-fusepy (Debian), listed in scripts/system-deps.mjs.
"""
import errno
import os
import subprocess
import sys
import threading

import fusepy as fuse


class PowerCutFs(fuse.Operations):
    def __init__(self, backing, mountpoint):
        self.backing = os.path.realpath(backing)
        self.mountpoint = mountpoint
        self.mutex = threading.RLock()
        # path -> bytearray: the file as the application sees it (synced content plus unsynced writes)
        self.dirty = {}
        # path -> [(start, end)]: the byte ranges written since the last fsync
        self.ranges = {}
        self.cut = False

    def _real(self, path):
        return os.path.join(self.backing, path.lstrip('/'))

    def _check(self):
        if self.cut:
            raise fuse.FuseOSError(errno.EIO)

    def _load(self, path):
        """The file's current content in memory (read from BACKING once)."""
        data = self.dirty.get(path)
        if data is None:
            with open(self._real(path), 'rb') as f:
                data = bytearray(f.read())
            self.dirty[path] = data
            self.ranges[path] = []
        return data

    # --- power cut --------------------------------------------------------------------------------
    def power_cut(self):
        with self.mutex:
            self.cut = True
            self.dirty.clear()
            self.ranges.clear()
        # libfuse 2 mounted it: its fusermount unmounts (lazily: the killed server may hold files).
        subprocess.run(['fusermount', '-u', '-z', self.mountpoint], check=False)

    # --- metadata, applied at once ----------------------------------------------------------------
    def getattr(self, path, fh=None):
        with self.mutex:
            st = os.lstat(self._real(path))
            attrs = {k: getattr(st, k) for k in (
                'st_mode', 'st_nlink', 'st_uid', 'st_gid', 'st_size',
                'st_atime', 'st_mtime', 'st_ctime')}
            if path in self.dirty:
                attrs['st_size'] = len(self.dirty[path])
            return attrs

    def readdir(self, path, fh):
        return ['.', '..'] + os.listdir(self._real(path))

    def access(self, path, mode):
        if not os.access(self._real(path), mode):
            raise fuse.FuseOSError(errno.EACCES)

    def chmod(self, path, mode):
        self._check()
        os.chmod(self._real(path), mode)

    def chown(self, path, uid, gid):
        self._check()
        os.chown(self._real(path), uid, gid)

    def utimens(self, path, times=None):
        os.utime(self._real(path), times)

    def mkdir(self, path, mode):
        self._check()
        os.mkdir(self._real(path), mode)

    def rmdir(self, path):
        self._check()
        os.rmdir(self._real(path))

    def unlink(self, path):
        self._check()
        with self.mutex:
            os.unlink(self._real(path))
            self.dirty.pop(path, None)
            self.ranges.pop(path, None)

    def rename(self, old, new):
        self._check()
        with self.mutex:
            os.rename(self._real(old), self._real(new))
            if old in self.dirty:
                self.dirty[new] = self.dirty.pop(old)
                self.ranges[new] = self.ranges.pop(old)
            else:
                self.dirty.pop(new, None)
                self.ranges.pop(new, None)

    def statfs(self, path):
        st = os.statvfs(self._real(path))
        return {k: getattr(st, k) for k in (
            'f_bavail', 'f_bfree', 'f_blocks', 'f_bsize', 'f_favail', 'f_ffree',
            'f_files', 'f_flag', 'f_frsize', 'f_namemax')}

    # --- contents, held until fsync ---------------------------------------------------------------
    def create(self, path, mode, fi=None):
        self._check()
        os.close(os.open(self._real(path), os.O_WRONLY | os.O_CREAT, mode))
        return 0

    def open(self, path, flags):
        if flags & os.O_TRUNC:
            self.truncate(path, 0)
        return 0

    def read(self, path, size, offset, fh):
        with self.mutex:
            data = self.dirty.get(path)
            if data is not None:
                return bytes(data[offset:offset + size])
            with open(self._real(path), 'rb') as f:
                f.seek(offset)
                return f.read(size)

    def write(self, path, buf, offset, fh):
        with self.mutex:
            self._check()
            data = self._load(path)
            if offset > len(data):
                data.extend(b'\0' * (offset - len(data)))
            data[offset:offset + len(buf)] = buf
            self.ranges[path].append((offset, offset + len(buf)))
            return len(buf)

    def truncate(self, path, length, fh=None):
        with self.mutex:
            self._check()
            data = self._load(path)
            if length < len(data):
                del data[length:]
            else:
                data.extend(b'\0' * (length - len(data)))

    def fsync(self, path, datasync, fh):
        with self.mutex:
            self._check()
            data = self.dirty.get(path)
            if data is None:
                return 0
            # Only what was written since the last sync goes to BACKING (the size always).
            fd = os.open(self._real(path), os.O_WRONLY)
            try:
                os.ftruncate(fd, len(data))
                for start, end in self.ranges[path]:
                    if start < len(data):
                        os.pwrite(fd, bytes(data[start:min(end, len(data))]), start)
                os.fsync(fd)
            finally:
                os.close(fd)
            self.ranges[path] = []
            return 0

    def fsyncdir(self, path, datasync, fh):
        self._check()
        return 0

    def flush(self, path, fh):
        return 0

    def release(self, path, fh):
        return 0


def main():
    backing, mountpoint = sys.argv[1], sys.argv[2]
    fs = PowerCutFs(backing, mountpoint)

    def control():
        for line in sys.stdin:
            if line.strip() == 'cut':
                break
        fs.power_cut()

    threading.Thread(target=control, daemon=True).start()

    def announce():
        # Ready once the kernel shows the mount.
        while True:
            with open('/proc/self/mounts') as m:
                if any(line.split()[1] == os.path.realpath(mountpoint) for line in m):
                    break
            threading.Event().wait(0.05)
        print('ready', flush=True)

    threading.Thread(target=announce, daemon=True).start()
    fuse.FUSE(fs, mountpoint, foreground=True, nothreads=False, allow_other=False,
              default_permissions=False)


if __name__ == '__main__':
    main()
