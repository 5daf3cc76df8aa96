/**
 * Child process of bench/startup.bench.ts for its memory table (section 3): loads the agent's
 * parts cumulatively up to LEVEL, writes "ready" on stdout and then idles until killed, so the
 * parent can read its resident memory (VmRSS). This file owns only that loading ladder:
 *
 *   1  @grpc/grpc-js, with a server bound on 127.0.0.1:0 (no service)
 *   2  + protobuf-es and the generated TamTam service (dist/src/gen/service/tamtam_pb.js)
 *   3  + pino, a JSON logger on stderr that has written one line
 *   4  + the protocol core (dist/src/core/node.js)
 *   5  + the engine around it (dist/src/engine/engine.js: UDP transport, core host, worker glue)
 *
 * Level 0 (bare Node) is not run here: the parent runs `node -e "setInterval(()=>{},1e9)"`.
 *
 *   node dist/bench/startup-part.js LEVEL
 */

/** Highest level; the parent's table names the levels (keep the two in step). */
const MAX_LEVEL = 5;

async function load(level: number): Promise<unknown[]> {
  const keep: unknown[] = [];
  if (level >= 1) {
    const grpc = await import("@grpc/grpc-js");
    const server = new grpc.Server();
    await new Promise<void>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    keep.push(server);
  }
  if (level >= 2) {
    const pb = await import("../src/gen/service/tamtam_pb.js");
    keep.push(pb.TamTam.methods.length);
  }
  if (level >= 3) {
    const { pino } = await import("pino");
    const logger = pino({ base: null }, pino.destination(2));
    logger.info("part loaded");
    keep.push(logger);
  }
  if (level >= 4) keep.push(await import("../src/core/node.js"));
  if (level >= 5) keep.push(await import("../src/engine/engine.js"));
  return keep;
}

const level = Number(process.argv[2]);
if (!Number.isInteger(level) || level < 1 || level > MAX_LEVEL) {
  process.stderr.write(`usage: startup-part.js LEVEL (1..${MAX_LEVEL})\n`);
  process.exit(2);
}
const kept = await load(level);
process.stdout.write(`ready ${kept.length}\n`);
setInterval(() => {}, 1e9);
