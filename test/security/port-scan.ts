/**
 * The port scan: `nmap -sV` on every TCP port (`-p-`) of every address of every interface of the
 * machine (`ip -j addr`; IPv4 and IPv6, link-local with its interface), XML report kept.
 *
 * Only the intended ports may listen for Tresor: the API port. keyd listens on a Unix socket only
 * and the stores are files, so neither has a TCP port. The machine's own services (PostgreSQL,
 * Redis, … and, on a shared machine, other people's test servers) are not Tresor's: a port open
 * before the stack started is not counted, and of the ports nmap finds, those whose listening
 * socket belongs to a process outside this run's process tree (`ss -ltnp`) are not either. What
 * is left are the stack's ports; any of them other than the intended ones is a finding, and so is
 * an intended port nmap did not find (the scan would have been blind).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { reportPath, runTool } from './reports.ts';
import type { ScanResult } from './tls-scan.ts';

interface Listener {
  address: string;
  port: number;
  pids: number[];
}

/** Every listening TCP socket of the machine, with its owning pids (root sees them all). */
export function tcpListeners(): Listener[] {
  const out = spawnSync('ss', ['-ltnpH'], { encoding: 'utf8' }).stdout;
  const listeners: Listener[] = [];
  for (const line of out.split('\n')) {
    const local = line.trim().split(/\s+/)[3];
    if (local === undefined) continue;
    const at = local.lastIndexOf(':');
    const pids = [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
    listeners.push({ address: local.slice(0, at), port: Number(local.slice(at + 1)), pids });
  }
  return listeners;
}

/** The ports open now: the baseline taken before the stack starts. */
export function openPorts(): Set<number> {
  return new Set(tcpListeners().map((l) => l.port));
}

/** `pid` and every process below it (from /proc). */
export function processTree(pid: number): Set<number> {
  const parents = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      parents.set(Number(entry), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // ended while we looked
    }
  }
  const tree = new Set([pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [p, pp] of parents) {
      if (tree.has(pp) && !tree.has(p)) {
        tree.add(p);
        grew = true;
      }
    }
  }
  return tree;
}

/** The machine's addresses, as nmap targets: IPv4 and IPv6 apart (nmap scans one family a run). */
export function machineAddresses(): { v4: string[]; v6: string[] } {
  const out = spawnSync('ip', ['-j', 'addr'], { encoding: 'utf8' }).stdout;
  const ifaces = JSON.parse(out) as {
    ifname: string;
    addr_info?: { family: string; local: string; scope: string }[];
  }[];
  const v4: string[] = [];
  const v6: string[] = [];
  for (const iface of ifaces) {
    for (const a of iface.addr_info ?? []) {
      if (a.family === 'inet') v4.push(a.local);
      else if (a.family === 'inet6') v6.push(a.scope === 'link' ? `${a.local}%${iface.ifname}` : a.local);
    }
  }
  return { v4, v6 };
}

interface OpenPort {
  address: string;
  port: number;
  service: string;
}

function parseNmap(xml: string): OpenPort[] {
  const found: OpenPort[] = [];
  for (const host of xml.matchAll(/<host[\s>][\s\S]*?<\/host>/g)) {
    const address = /<address addr="([^"]+)"/.exec(host[0])?.[1] ?? '?';
    for (const port of host[0].matchAll(/<port protocol="tcp" portid="(\d+)">([\s\S]*?)<\/port>/g)) {
      if (!/<state state="open"/.test(port[2] as string)) continue;
      const service = /<service ([^>]*)>?/.exec(port[2] as string)?.[1] ?? '';
      const name = /name="([^"]*)"/.exec(service)?.[1] ?? '?';
      const product = /product="([^"]*)"/.exec(service)?.[1] ?? '';
      found.push({ address, port: Number(port[1]), service: `${name}${product ? ` (${product})` : ''}` });
    }
  }
  return found;
}

export interface PortScanOptions {
  /** The ports that may listen for Tresor. */
  intended: readonly number[];
  /** Ports open before the stack started. */
  baseline: ReadonlySet<number>;
  /** The root of the stack's process tree (this test process: the stack's processes are its children). */
  stackRoot: number;
  name?: string;
}

export async function nmapScan(options: PortScanOptions): Promise<ScanResult> {
  const name = options.name ?? 'nmap';
  const { v4, v6 } = machineAddresses();
  const families = [
    { suffix: 'ipv4', targets: v4, flags: [] as string[] },
    { suffix: 'ipv6', targets: v6, flags: ['-6'] },
  ].filter((f) => f.targets.length > 0);
  const findings: string[] = [];
  const notices: string[] = [`addresses scanned: ${[...v4, ...v6].join(' ')}`];
  const reports: string[] = [];
  const open: OpenPort[] = [];
  await Promise.all(
    families.map(async (f) => {
      const xml = reportPath(`${name}-${f.suffix}.xml`);
      reports.push(xml);
      const run = await runTool(
        'nmap',
        [
          ...f.flags,
          '-sV',
          '--version-light',
          '-p-',
          '-n',
          '-Pn',
          '-T4',
          '--max-retries',
          '2',
          '-oX',
          xml,
          ...f.targets,
        ],
        { timeoutMs: 15 * 60_000 },
      );
      if (run.timedOut) findings.push(`nmap (${f.suffix}) did not finish within its time limit`);
      else if (run.status !== 0)
        findings.push(`nmap (${f.suffix}) failed (exit ${run.status}): ${run.stderr.slice(0, 300)}`);
      try {
        open.push(...parseNmap(readFileSync(xml, 'utf8')));
      } catch {
        findings.push(`nmap (${f.suffix}) wrote no XML report`);
      }
    }),
  );
  // Owners looked up right after the scan: the stack's processes are still running.
  const tree = processTree(options.stackRoot);
  const owners = new Map<number, number[]>();
  for (const l of tcpListeners()) owners.set(l.port, [...(owners.get(l.port) ?? []), ...l.pids]);
  const stackPorts = new Set<number>();
  for (const o of open) {
    const ours = (owners.get(o.port) ?? []).some((pid) => tree.has(pid));
    if (ours) {
      stackPorts.add(o.port);
      if (!options.intended.includes(o.port)) {
        findings.push(
          `${o.address}:${o.port} ${o.service} listens for the stack, and only ${options.intended.join(', ')} may`,
        );
      }
    } else if (!options.baseline.has(o.port)) {
      notices.push(
        `${o.address}:${o.port} ${o.service}: opened meanwhile by another process of the machine (not the stack's)`,
      );
    }
  }
  for (const port of options.intended) {
    if (!stackPorts.has(port))
      findings.push(`nmap did not find the intended port ${port} open: the scan was blind`);
  }
  notices.push(`the stack's open ports: ${[...stackPorts].sort((a, b) => a - b).join(', ') || 'none'}`);
  notices.push(
    `machine ports not the stack's: ${[...new Set(open.map((o) => o.port))].filter((p) => !stackPorts.has(p)).length}`,
  );
  return { findings, notices, reports };
}
