/**
 * src/engine/limits.ts: the engine's limits that the command line checks before any engine code
 * loads (a module of constants only, so the CLI layer can share it with the agent's).
 */

/** Most worker threads an engine runs (the protocol worker and its seal/open workers). */
export const MAX_ENGINE_WORKERS = 8;
