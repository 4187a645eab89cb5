/**
 * The one check for control characters in free text that Tresor stores or signs (labels, names,
 * grant reasons, review notes, signed notes): C0 controls U+0000–U+001F and DEL U+007F. A caller
 * names the few it allows, e.g. newline in C2SP signed notes ("MUST NOT contain any ASCII control
 * characters ... other than newline"), tab and newline in review notes.
 */
export function hasControlCharacter(text: string, allowed: readonly ('\t' | '\n')[] = []): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 || c === 0x7f) && !allowed.includes(text[i] as '\t' | '\n')) return true;
  }
  return false;
}
