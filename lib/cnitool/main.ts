export async function cnitool(_argv: string[]): Promise<number> {
  process.stderr.write("cnitool: not built yet\n");
  return 2;
}
