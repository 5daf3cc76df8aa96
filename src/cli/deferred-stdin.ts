/**
 * Standard input that is opened on first read. clipanion builds its default context, standard
 * input included, when its module loads, and Node creates `process.stdin` on first access: a
 * ReadStream (and the fs stream modules) for a file or /dev/null, a socket for a pipe. Only
 * `tamtam broadcast` without a message reads it, so the executable (layer-loader.ts) loads the
 * command line with `process.stdin` standing for a stream that opens the real one when it is
 * first read, and puts Node's own getter back at once.
 */

import { Readable } from "node:stream";
import { isatty } from "node:tty";

/** A Readable that passes on `open()`'s stream, calling it on the first read. */
function deferredReadable(open: () => NodeJS.ReadStream): Readable {
  let source: NodeJS.ReadStream | undefined;
  const stream = new Readable({
    read(): void {
      if (source === undefined) {
        const opened = open();
        source = opened;
        opened.on("data", (chunk: Buffer | string) => {
          if (!stream.push(chunk)) opened.pause();
        });
        opened.once("end", () => stream.push(null));
        opened.once("error", (error: Error) => stream.destroy(error));
      }
      source.resume();
    },
    destroy(error, callback): void {
      source?.destroy();
      callback(error);
    },
  });
  // Asked before reading (to prompt on a terminal); file descriptor 0 answers without opening it.
  Object.defineProperty(stream, "isTTY", { get: () => isatty(0), enumerable: true });
  return stream;
}

/** Runs `load` while `process.stdin` is a stream that opens the real standard input on first read. */
export function withDeferredStdin<T>(load: () => T): T {
  const descriptor = Object.getOwnPropertyDescriptor(process, "stdin");
  const realGetter = descriptor?.get;
  if (descriptor === undefined || realGetter === undefined || descriptor.configurable !== true) return load();
  const deferred = deferredReadable(() => realGetter.call(process) as NodeJS.ReadStream);
  Object.defineProperty(process, "stdin", { configurable: true, enumerable: descriptor.enumerable ?? true, get: () => deferred });
  try {
    return load();
  } finally {
    Object.defineProperty(process, "stdin", descriptor);
  }
}
