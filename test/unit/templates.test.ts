import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Templates as TemplatesSchema } from "../../src/config/templates-schema.js";
import { validateConfig, ConfigError } from "../../src/config/load.js";
import type { Coordinator, LockEntry, ServiceInstance } from "../../src/discovery/coordination.js";
import { EventBus, type BusEvent } from "../../src/events/bus.js";
import { mysqlView } from "../../src/templates/dependencies.js";
import { Templates, type RenderOutcome } from "../../src/templates/templates.js";
import { writeAtomically } from "../../src/templates/write.js";
import { waitFor } from "../../src/lab/wait.js";
import { Supervisor } from "../../src/supervisor/supervisor.js";
import { Metrics } from "../../src/telemetry/metrics.js";

/** Services and KV in memory, with Consul's blocking-query contract: an index answers once the data moved past it. */
class FakeStore {
  index = 1;
  services = new Map<string, ServiceInstance[]>();
  kv = new Map<string, string>();
  requests = 0;
  private waiters: Array<() => void> = [];

  change(f: () => void): void {
    f();
    this.index++;
    for (const w of this.waiters.splice(0)) w();
  }

  private async block(index: number, signal: AbortSignal | undefined): Promise<void> {
    this.requests++;
    if (index < this.index) return;
    await new Promise<void>((resolve) => {
      this.waiters.push(resolve);
      signal?.addEventListener("abort", () => resolve(), { once: true });
    });
    if (signal?.aborted) throw new Error("aborted");
  }

  coordinator(): Coordinator {
    const entry = (value: string): LockEntry => ({ value, session: undefined, lockIndex: 0, modifyIndex: this.index });
    const c: Pick<Coordinator, "watchService" | "read" | "list"> = {
      watchService: async (name, o) => {
        await this.block(o.index, o.signal);
        return { instances: this.services.get(name) ?? [], index: this.index };
      },
      read: async (key, o = {}) => {
        await this.block(o.index ?? 0, o.signal);
        const v = this.kv.get(key);
        return { entry: v === undefined ? undefined : entry(v), index: this.index };
      },
      list: async (prefix, o = {}) => {
        await this.block(o.index ?? 0, o.signal);
        return { entries: [...this.kv].filter(([k]) => k.startsWith(prefix)).map(([key, v]) => ({ key, ...entry(v) })), index: this.index };
      },
    };
    return c as Coordinator;
  }
}

const instance = (node: string, port: number, healthy = true, tags: string[] = []): ServiceInstance => ({
  id: `web-${node}`, name: "web", node, address: `10.0.0.${node.slice(-1)}`, port, tags, meta: { zone: "a" }, checks: [], healthy,
});

let dir: string;
let store: FakeStore;
let templates: Templates | undefined;
let events: BusEvent[];
let outcomes: RenderOutcome[];
let commands: boolean[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "statepilot-tpl-unit-"));
  store = new FakeStore();
  events = [];
  outcomes = [];
  commands = [];
});
afterEach(async () => {
  await templates?.stop();
  templates = undefined;
  rmSync(dir, { recursive: true, force: true });
});

function start(tpl: Record<string, unknown> & { text: string }, env: NodeJS.ProcessEnv = {}): { source: string; destination: string; status: () => ReturnType<Templates["status"]>[number] } {
  const source = join(dir, "t.liquid");
  const destination = join(dir, "out", "t.conf");
  writeFileSync(source, tpl.text);
  const { text: _text, ...rest } = tpl;
  const [config] = TemplatesSchema.parse([{ name: "t", source, destination, ...rest }]);
  const bus = new EventBus();
  bus.subscribe("test", (e) => void events.push(e));
  templates = new Templates([config!], {
    coordinator: () => store.coordinator(),
    clusterStore: () => {
      throw new Error("no cluster in this test");
    },
    defaultCluster: { cluster: "default", serviceName: "mysql" },
    bus,
    logger: pino({ level: "silent" }),
    env: () => env,
    observer: { templateRendered: (_t, o) => void outcomes.push(o), templateCommandRan: (_t, ok) => void commands.push(ok) },
  });
  templates.start();
  return { source, destination, status: () => templates!.status()[0]! };
}

const read = (p: string) => {
  try {
    return readFileSync(p, "utf8");
  } catch {
    return "";
  }
};

describe("template config", () => {
  it("is validated, with defaults, and names duplicates", () => {
    const c = validateConfig({ templates: [{ name: "a", source: "a.liquid", destination: "/tmp/a", wait: { min: "1s" } }] }, "test");
    expect(c.templates[0]).toMatchObject({ name: "a", shell: false, commandTimeout: 30_000, wait: { min: 1_000 } });
    expect(() => validateConfig({ templates: [{ name: "a", source: "x", destination: "/tmp/a" }, { name: "a", source: "y", destination: "/tmp/a" }] }, "test")).toThrow(ConfigError);
    expect(() => validateConfig({ templates: [{ name: "a", source: "x", destination: "/tmp/a", wait: { min: "2s", max: "1s" } }] }, "test")).toThrow(/must not be shorter than min/);
    expect(() => validateConfig({ templates: [{ name: "a", source: "x", destination: "/tmp/a", mode: "rw" }] }, "test")).toThrow(/octal/);
  });
});

describe("rendering", () => {
  it("renders healthy instances, keys and env; re-renders on change, writes only when the text changed, then runs the command", async () => {
    store.services.set("web", [instance("n2", 81), instance("n1", 80), instance("n3", 82, false)]);
    store.kv.set("app/greeting", "hello");
    const t = start({
      text: '{% for s in service.web %}{{ s.node }} {{ s.address }}:{{ s.port }} {{ s.meta.zone }}\n{% endfor %}{{ key["app/greeting"] }} {{ env.WHO }}\n',
      command: ["sh", "-c", `echo ran >> ${join(dir, "ran")}`],
    }, { WHO: "world" });
    await waitFor(async () => read(t.destination) !== "", { timeoutMs: 5_000, what: "the first render" });
    expect(read(t.destination)).toBe("n1 10.0.0.1:80 a\nn2 10.0.0.2:81 a\nhello world\n");
    await waitFor(async () => read(join(dir, "ran")) === "ran\n", { timeoutMs: 5_000, what: "the command" });
    expect(t.status().dependencies).toEqual(["key(app/greeting)", "service(web)"]);
    expect(events).toContainEqual(expect.objectContaining({ code: "changed", source: "template.t" }));

    // A change that does not alter the text: rendered, not written, no command.
    store.change(() => store.services.set("web", [instance("n2", 81), instance("n1", 80, true, ["canary"]), instance("n3", 82, false)]));
    await waitFor(async () => outcomes.includes("unchanged"), { timeoutMs: 5_000, what: "a render that changes nothing" });
    expect(t.status().writes).toBe(1);

    store.change(() => store.kv.set("app/greeting", "bonjour"));
    await waitFor(async () => read(t.destination).includes("bonjour"), { timeoutMs: 5_000, what: "the re-render" });
    await waitFor(async () => read(join(dir, "ran")) === "ran\nran\n", { timeoutMs: 5_000, what: "the second command" });
    expect(commands).toEqual([true, true]);
  });

  it("a missing key fails the render and keeps the file; the key appearing recovers it", async () => {
    store.kv.set("a", "1");
    mkdirSync(join(dir, "out"));
    writeFileSync(join(dir, "out", "t.conf"), "last good\n");
    const t2 = start({ text: '{{ key["a"] }} {{ key["b"] }}\n' }, {});
    await waitFor(async () => t2.status().lastError, { timeoutMs: 5_000, what: "the missing-key error" });
    expect(t2.status().lastError!.message).toMatch(/key "b" does not exist/);
    expect(t2.status().ok).toBe(false);
    expect(read(t2.destination)).toBe("last good\n");
    expect(outcomes).toContain("error");
    store.change(() => store.kv.set("b", "2"));
    await waitFor(async () => read(t2.destination) === "1 2\n" && t2.status().ok, { timeoutMs: 5_000, what: "the render once the key exists" });
    expect(t2.status()).toMatchObject({ ok: true });
    expect(t2.status().lastError).toBeUndefined();
  });

  it("an edited source re-renders without a restart; a syntax error keeps the last good file", async () => {
    const t = start({ text: "v1\n" });
    await waitFor(async () => read(t.destination) === "v1\n", { timeoutMs: 5_000, what: "v1" });
    writeFileSync(t.source, "{% for x in %}\n");
    await waitFor(async () => t.status().lastError, { timeoutMs: 5_000, what: "the syntax error" });
    expect(read(t.destination)).toBe("v1\n");
    writeFileSync(t.source, "v2 {{ tree['cfg'] | size }}\n");
    await waitFor(async () => read(t.destination) === "v2 0\n" && t.status().ok, { timeoutMs: 5_000, what: "v2" });
    expect(t.status().lastError).toBeUndefined();
    expect(t.status().dependencies).toEqual(["tree(cfg)"]);
  });

  it("debounces as consul-template: a burst of changes renders once, after `min` of quiet", async () => {
    store.kv.set("n", "0");
    const t = start({ text: '{{ key["n"] }}', wait: { min: "300ms" } });
    await waitFor(async () => read(t.destination) === "0" && t.status().renders === 1, { timeoutMs: 5_000, what: "the first render" });
    const rendersBefore = t.status().renders;
    for (let i = 1; i <= 8; i++) {
      store.change(() => store.kv.set("n", String(i)));
      await new Promise((r) => setTimeout(r, 20)); // a burst: changes 20 ms apart, closer than min
    }
    // The file is renamed into place just before the status counts the render: wait for both.
    await waitFor(async () => read(t.destination) === "8" && t.status().renders > rendersBefore, { timeoutMs: 5_000, what: "the debounced render" });
    expect(t.status().renders - rendersBefore).toBe(1);
  });

  it("a failing command is reported", async () => {
    const t = start({ text: "x\n", command: "sh -c 'echo broken >&2; exit 3'" });
    await waitFor(async () => t.status().lastCommand, { timeoutMs: 5_000, what: "the command" });
    expect(t.status().lastCommand).toMatchObject({ ok: false, code: 3, output: "broken" });
    expect(commands).toEqual([false]);
  });
});

describe("writeAtomically", () => {
  it("writes only changed content, keeps an existing file's mode, applies an explicit one", async () => {
    const p = join(dir, "sub", "f.conf");
    expect(await writeAtomically(p, "a")).toEqual({ written: true });
    expect(statSync(p).mode & 0o777).toBe(0o644);
    chmodSync(p, 0o600);
    const ino = statSync(p).ino;
    expect(await writeAtomically(p, "a")).toEqual({ written: false });
    expect(statSync(p).ino).toBe(ino);
    expect(await writeAtomically(p, "b")).toEqual({ written: true });
    expect(statSync(p).ino).not.toBe(ino); // a new file renamed over the old one
    expect(statSync(p).mode & 0o777).toBe(0o600);
    await writeAtomically(p, "c", "0640");
    expect(statSync(p).mode & 0o777).toBe(0o640);
    expect(readFileSync(p, "utf8")).toBe("c");
  });
});

describe("mysql data", () => {
  it("primary, and replicas that replicate from it, are alive and answer", () => {
    const m = (node: string, role: "primary" | "replica" | "down", extra: Record<string, unknown> = {}) => ({
      node, serverId: Number(node.slice(-1)), host: `127.0.0.${node.slice(-1)}`, port: 3306, role, up: true, executed: "", received: "", lagSeconds: role === "replica" ? 1 : null,
      sqlError: "", nofailover: false, blocked: "", maintenance: false, source: role === "replica" ? "n1" : "", at: "", alive: true, ageSeconds: 0, ...extra,
    });
    const v = mysqlView("c", {
      primary: { node: "n1", serverId: 1, host: "127.0.0.1", port: 3306, flavor: "mariadb", version: "11", gtid: "", promotedAt: "t", term: 3 },
      members: [m("n1", "primary"), m("n2", "replica"), m("n3", "replica", { alive: false }), m("n4", "replica", { sqlError: "1062" }), m("n5", "replica", { lagSeconds: 99 })],
      switchover: undefined,
      pause: undefined,
      invalid: [],
    });
    expect(v.primary).toMatchObject({ node: "n1", address: "127.0.0.1", port: 3306, term: 3 });
    expect(v.replicas.map((r) => r.node)).toEqual(["n2", "n5"]);
    expect(v.members).toHaveLength(5);
  });
});

describe("in the supervisor", () => {
  it("runs the templates part: /status section, metrics, and a reload that changes a template", async () => {
    const src = join(dir, "s.liquid");
    writeFileSync(src, "{{ env.GREETING }}\n");
    const metrics = new Metrics();
    const cfg = (dest: string) => validateConfig({ node: "n1", logging: { level: "fatal" }, control: { socket: join(dir, "sock") }, templates: [{ name: "greet", source: src, destination: join(dir, dest) }] }, "test");
    const sup = new Supervisor({ config: cfg("a.txt"), logger: pino({ level: "silent" }), observer: metrics.observer() });
    sup.putEnv({ GREETING: "hi" });
    sup.start();
    try {
      await waitFor(async () => read(join(dir, "a.txt")) === "hi\n" && (sup.status().templates as Array<{ writes: number }>)[0]?.writes === 1, { timeoutMs: 5_000, what: "a.txt" });
      const part = sup.status().templates as Array<{ name: string; ok: boolean; writes: number }>;
      expect(part).toEqual([expect.objectContaining({ name: "greet", ok: true, writes: 1 })]);
      const text = await metrics.text();
      expect(text).toContain('statepilot_template_renders_total{template="greet",outcome="written"} 1');
      expect(text).toContain('statepilot_template_render_errors_total{template="greet"} 0');
      await sup.reload(cfg("b.txt"));
      await waitFor(async () => read(join(dir, "b.txt")) === "hi\n", { timeoutMs: 5_000, what: "b.txt after the reload" });
    } finally {
      await sup.shutdown("test");
    }
  });
});
