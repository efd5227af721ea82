import JSON5 from "json5";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfigText } from "../../src/config/load.js";
import { seededRandom } from "../../src/lab/random.js";

/**
 * Seeded config fuzzing: thousands of mutated configs must each end in a valid Config or a
 * ConfigError naming a path, never another exception or a hang. SEED is printed; rerun a failure
 * with STATEPILOT_FUZZ_SEED=<seed>.
 */
const SEED = Number(process.env.STATEPILOT_FUZZ_SEED ?? 20261122);
const CASES = 2500;


const BASES: unknown[] = [
  {
    consul: { address: "http://127.0.0.1:8500", timeout: "5s" },
    jobs: [
      { name: "app", exec: ["my-server", "--port", "8080"], main: true, restarts: "unlimited", health: { exec: "true", interval: "1s", ttl: "5s" }, service: { name: "app", port: 8080, tags: ["a"] } },
      { name: "tick", exec: "echo hi", when: { interval: "10s" }, timeout: "5s" },
      { name: "on-change", exec: "reload.sh", when: { source: "watch.db", each: "changed" }, hooks: { stopping: { exec: "drain.sh" } } },
    ],
    watches: [{ name: "db", wait: "30s" }],
    telemetry: { port: 9090, metrics: [{ name: "q_depth", help: "h", type: "gauge", labels: ["q"] }], sensors: [{ metric: "q_depth", exec: "depth.sh", labels: { q: "main" } }] },
  },
  {
    node: "mysql-1",
    telemetry: { port: 9090 },
    mysql: {
      cluster: "shop",
      credentials: { rootPassword: "r", replPassword: "p" },
      interval: "1s",
      checkTtl: "5s",
      lockDelay: "2s",
      fenceAfter: "3s",
      lossless: { enabled: true, ackTimeout: "1h" },
      snapshots: { store: { type: "s3", bucket: "backups", endpoint: "http://minio:9000", forcePathStyle: true }, interval: "6h", keepLast: 3 },
    },
  },
];

const WEIRD: unknown[] = [
  null, true, false, 0, -1, 1.5, 1e308, -1e308, Number.MAX_SAFE_INTEGER, "", " ", "5s", "-5s", "5 seconds", "0s", "999999999h",
  "${", "${UNSET}", "${UNSET:?boom}", "$$", "\u0000", "😀", "a".repeat(10_000), [], [1, "a", null], {}, { __proto__: { polluted: true } },
  { constructor: { prototype: { x: 1 } } }, "unlimited", "never", "SIGKILL", "local", "s3",
];

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

type Node = Record<string, unknown> | unknown[];

/** Every container (object or array) in the tree, with its path. */
function containers(tree: unknown, out: Node[] = []): Node[] {
  if (tree && typeof tree === "object") {
    out.push(tree as Node);
    for (const v of Object.values(tree)) containers(v, out);
  }
  return out;
}

function mutate(tree: unknown, r: () => number): unknown {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const n = 1 + Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const all = containers(tree);
    const c = pick(all);
    const keys = Array.isArray(c) ? c.map((_, k) => k) : Object.keys(c);
    const op = r();
    if (keys.length && op < 0.35) {
      const k = pick(keys as Array<string | number>);
      (c as Record<string | number, unknown>)[k] = clone(pick(WEIRD));
    } else if (keys.length && op < 0.55) {
      const k = pick(keys as Array<string | number>);
      if (Array.isArray(c)) c.splice(Number(k), 1);
      else delete (c as Record<string, unknown>)[k as string];
    } else if (op < 0.75) {
      const key = pick(["bogus", "name", "exec", "type", "__proto__", "constructor", "interval", "store", "jobs", "mysql", "extends"]);
      if (Array.isArray(c)) c.push(clone(pick(WEIRD)));
      else Object.defineProperty(c, key, { value: clone(pick(WEIRD)), enumerable: true, configurable: true, writable: true });
    } else if (keys.length) {
      // Duplicate a sibling: duplicate names, repeated mains, two stores.
      const k = pick(keys as Array<string | number>);
      const v = clone((c as Record<string | number, unknown>)[k]);
      if (Array.isArray(c)) c.push(v);
      else (c as Record<string, unknown>)[`${String(k)}`] = v;
    }
  }
  return tree;
}

function textMutation(text: string, r: () => number): string {
  const at = Math.floor(r() * text.length);
  const op = r();
  if (op < 0.4) return text.slice(0, at);
  if (op < 0.7) return text.slice(0, at) + pick(r, ["{", "}", "[", "]", ",", ":", '"', "'", "\\", "/*", "\u2028", "NaN", "Infinity", "0x1F"]) + text.slice(at);
  return text.slice(0, at) + text.slice(at + 1 + Math.floor(r() * 20));
}

function pick<T>(r: () => number, xs: T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

describe(`config fuzzing (seed ${SEED})`, () => {
  // A fixed amount of work: on a busy machine it takes longer, which is no failure.
  it(`${CASES} mutated configs end in a valid config or a ConfigError, never a crash`, { timeout: 300_000 }, () => {
    const r = seededRandom(SEED);
    const outcomes = { valid: 0, invalid: 0 };
    const env = { MYSQL_ROOT_PASSWORD: "x" };
    const started = performance.now();
    for (let i = 0; i < CASES; i++) {
      const base = clone(BASES[i % BASES.length]);
      let text: string;
      if (r() < 0.8) text = JSON5.stringify(mutate(base, r));
      else text = textMutation(JSON5.stringify(base, null, 2), r);
      const caseStart = performance.now();
      try {
        parseConfigText(text, env, `case ${i}`);
        outcomes.valid++;
      } catch (err) {
        if (!(err instanceof ConfigError)) throw new Error(`case ${i} (seed ${SEED}) threw ${String(err)} for:\n${text.slice(0, 2000)}`);
        expect(err.problems.length, `case ${i}`).toBeGreaterThan(0);
        for (const p of err.problems) expect(p.path, `case ${i}: ${err.message}`).not.toBe("");
        outcomes.invalid++;
      }
      expect(performance.now() - caseStart, `case ${i} took too long`).toBeLessThan(2_000);
    }
    console.log(`config fuzz: seed ${SEED}, ${CASES} cases, ${outcomes.valid} valid, ${outcomes.invalid} rejected with a ConfigError, ${(performance.now() - started).toFixed(0)} ms`);
    expect(outcomes.invalid).toBeGreaterThan(CASES / 2);
    expect(outcomes.valid).toBeGreaterThan(0);
  });
});
