/**
 * The word that names the command on a `tamtam` command line (`nodes` in `tamtam --rpc
 * localhost:6363 nodes --json`): the first word that is neither an option nor the value of a
 * global option that takes one. The command line registers only the commands it names, and the
 * executable keeps one code cache per command word.
 */

/** Global options that take a value: their values are no command words. */
const GLOBAL_VALUE_OPTIONS: ReadonlySet<string> = new Set(["--rpc", "--rpc-token", "--config"]);

export function commandWord(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (GLOBAL_VALUE_OPTIONS.has(arg)) i++;
    else if (!arg.startsWith("-")) return arg;
  }
  return undefined;
}
