/** Reading iptables-save dumps and writing iptables-restore input. */

/** Chains declared in an iptables-save dump of one table. */
export function savedChains(dump: string): Set<string> {
  const chains = new Set<string>();
  for (const line of dump.split("\n")) if (line.startsWith(":")) chains.add(line.slice(1).split(" ")[0]!);
  return chains;
}

/** "-A" rules of an iptables-save dump, optionally only those of one chain. */
export function savedRules(dump: string, chain?: string): string[] {
  return dump.split("\n").filter((l) => l.startsWith("-A ") && (chain === undefined || l.startsWith(`-A ${chain} `)));
}

/** Splits a saved rule into words the way iptables-restore does (double quotes, backslash escapes). */
export function tokenize(line: string): string[] {
  const words: string[] = [];
  let cur = "";
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === "\\" && i + 1 < line.length) cur += line[++i];
      else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') {
      quoted = inWord = true;
    } else if (c === " " || c === "\t") {
      if (inWord) words.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (inWord) words.push(cur);
  return words;
}

/** Quotes a word for iptables-restore's tokenizer (it understands double quotes and \"). */
export function restoreQuote(word: string): string {
  if (/^[A-Za-z0-9_.:/,!+=-]+$/.test(word)) return word;
  return `"${word.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;
}
