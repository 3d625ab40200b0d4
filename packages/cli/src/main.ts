/** Entry point of the gkd command; returns the exit code. (Placeholder until the CLI lands.) */
export async function main(argv: string[]): Promise<number> {
  console.log(`gkd ${argv.join(' ')}`);
  return 0;
}
