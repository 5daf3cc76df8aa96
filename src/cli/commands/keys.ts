/**
 * `tamtam keys list|install|use|remove`: gossip key management across the cluster (the
 * ListKeys, InstallKey, UseKey and RemoveKey RPCs). Keys are shown by fingerprint only.
 */

import { Command, Option } from "clipanion";
import type { KeysReply } from "../../gen/service/tamtam_pb.js";
import { CliError, EXIT, UNARY_TIMEOUT_MS, TamTamCommand, type AgentClient } from "../base-command.js";

/** The agent's own default wait for the members (ms), used when --timeout is not given. */
const DEFAULT_TIMEOUT_MS = 5_000;

const DETAILS_COMMON = `      The agent applies the operation to its own keyring first, then sends it to every alive
      member (sealed under the current primary key), retries the members that do not confirm and
      waits for them up to \`--timeout MS\` (default ${DEFAULT_TIMEOUT_MS}). Every member rewrites its
      keyring file. With \`--local\` only the agent itself is changed.

      Keys are shown by fingerprint, \`sha256:\` and the first 8 bytes of the key's SHA-256 in hex
      (compare with \`printf %s KEY | base64 -d | sha256sum\`); keys themselves are never printed.

      Prints the members that confirmed and, for each key, on how many members it is installed
      and primary; then one line \`MEMBER did not confirm: REASON\` for each member that did not
      confirm, and exits with status 1 if there was any. \`--json\` prints one JSON object.`;

abstract class KeysCommand extends TamTamCommand {
  json = Option.Boolean("--json", false, { description: "print one JSON object" });
  local = Option.Boolean("--local", false, { description: "act on this agent only, not the cluster" });
  timeout = Option.String("--timeout", { description: "how long to wait for the members (ms, 100..60000; default 5000)" });

  protected abstract call(agent: AgentClient, options: { local: boolean; timeoutMillis: number }, callTimeoutMs: number): Promise<KeysReply>;

  async execute(): Promise<number> {
    const timeoutMillis = this.timeoutMillis();
    const reply = await this.call(await this.agent(), { local: this.local, timeoutMillis }, (timeoutMillis || DEFAULT_TIMEOUT_MS) + UNARY_TIMEOUT_MS);
    const failures = reply.failures.map((f) => ({ member: memberKey(f.member?.IP ?? "?", f.member?.port ?? 0), reason: f.reason }));
    if (this.json) {
      await this.line(
        JSON.stringify({
          members: reply.members,
          confirmed: reply.confirmed,
          keys: reply.keys.map((k) => ({ fingerprint: k.fingerprint, installed: k.installed, primary: k.primary, local: k.local })),
          failures,
        }),
      );
    } else {
      let text = `${reply.confirmed} of ${reply.members} members confirmed\n`;
      for (const k of reply.keys) {
        const where = k.primary > 0 ? `, primary on ${k.primary}` : "";
        text += `${k.fingerprint}  installed on ${k.installed} of ${reply.confirmed}${where}${k.local ? "" : " (not on this agent)"}\n`;
      }
      await this.write(text);
    }
    for (const f of failures) this.context.stderr.write(`${f.member} did not confirm: ${f.reason}\n`);
    return failures.length === 0 ? 0 : EXIT.FAILED;
  }

  private timeoutMillis(): number {
    if (this.timeout === undefined) return 0;
    const ms = Number(this.timeout);
    if (!Number.isInteger(ms) || ms < 100 || ms > 60_000) throw new CliError(`--timeout must be an integer in 100..60000 ms, got "${this.timeout}"`, EXIT.USAGE);
    return ms;
  }
}

function memberKey(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

abstract class KeyChangeCommand extends KeysCommand {
  key = Option.String({ name: "KEY" });

  protected abstract method(agent: AgentClient): AgentClient["installKey"];

  protected call(agent: AgentClient, options: { local: boolean; timeoutMillis: number }, callTimeoutMs: number): Promise<KeysReply> {
    return this.method(agent)({ key: this.key, ...options }, { timeoutMs: callTimeoutMs });
  }
}

export class KeysListCommand extends KeysCommand {
  static override paths = [["keys", "list"]];
  static override usage = Command.Usage({
    description: "list the gossip keys of the cluster's members",
    details: `
      Asks every alive member which gossip keys it holds.

${DETAILS_COMMON}
    `,
    examples: [
      ["List the keys of the cluster", "$0 keys list"],
      ["As JSON", "$0 keys list --json"],
    ],
  });

  protected call(agent: AgentClient, options: { local: boolean; timeoutMillis: number }, callTimeoutMs: number): Promise<KeysReply> {
    return agent.listKeys(options, { timeoutMs: callTimeoutMs });
  }
}

export class KeysInstallCommand extends KeyChangeCommand {
  static override paths = [["keys", "install"]];
  static override usage = Command.Usage({
    description: "install a gossip key on every member",
    details: `
      Installs KEY (base64 of 16, 24 or 32 bytes) on every member: from then on datagrams
      sealed with it are opened; it seals nothing until made primary with \`keys use\`.

${DETAILS_COMMON}
    `,
    examples: [["Install a new key", "$0 keys install $(openssl rand -base64 32)"]],
  });

  protected method(agent: AgentClient): AgentClient["installKey"] {
    return agent.installKey.bind(agent);
  }
}

export class KeysUseCommand extends KeyChangeCommand {
  static override paths = [["keys", "use"]];
  static override usage = Command.Usage({
    description: "make an installed gossip key the primary on every member",
    details: `
      Makes KEY, already installed (\`keys install\`), the primary key of every member: every
      datagram is sealed with it from then on.

${DETAILS_COMMON}
    `,
    examples: [["Seal with the new key", "$0 keys use NEWKEY"]],
  });

  protected method(agent: AgentClient): AgentClient["installKey"] {
    return agent.useKey.bind(agent);
  }
}

export class KeysRemoveCommand extends KeyChangeCommand {
  static override paths = [["keys", "remove"]];
  static override usage = Command.Usage({
    description: "remove a gossip key from every member",
    details: `
      Removes KEY from every member. The primary key cannot be removed: make another key
      primary first (\`keys use\`); an agent refuses, and so does every member whose primary it
      still is.

${DETAILS_COMMON}
    `,
    examples: [["Remove the old key", "$0 keys remove OLDKEY"]],
  });

  protected method(agent: AgentClient): AgentClient["installKey"] {
    return agent.removeKey.bind(agent);
  }
}
