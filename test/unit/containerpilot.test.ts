import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import JSON5 from "json5";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfigFile, parseConfigText, validateConfig } from "../../src/config/load.js";
import { interpolateTree } from "../../src/config/interpolate.js";
import { convertText, renderTemplate } from "../../src/config/containerpilot/index.js";
import { EventBus } from "../../src/events/bus.js";
import { resolveAddress } from "../../src/discovery/address.js";
import { createLogger } from "../../src/log.js";
import { Job } from "../../src/supervisor/job.js";
import { UsageError } from "../../src/cli/args.js";
import { containerPilotArgv } from "../../src/cli/containerpilot-flags.js";

const FIXTURES = fileURLToPath(new URL("../fixtures/containerpilot/", import.meta.url));
const fixtures = readdirSync(FIXTURES).filter((f) => f.endsWith(".json5")).sort();
const load = (name: string, env: NodeJS.ProcessEnv = {}) => loadConfigFile(join(FIXTURES, name), env);

function problemsOf(text: string, env: NodeJS.ProcessEnv = {}): ConfigError {
  try {
    parseConfigText(text, env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("ContainerPilot fixtures", () => {
  it("has at least five v3 configs and the v2 example, each with its origin", () => {
    expect(fixtures.filter((f) => !f.startsWith("v2-")).length).toBeGreaterThanOrEqual(5);
    expect(fixtures.some((f) => f.startsWith("v2-"))).toBe(true);
    for (const f of fixtures) expect(readFileSync(join(FIXTURES, f), "utf8")).toMatch(/^\/\/ Test fixture[\s\S]*\/\/ Origin: https:\/\/github\.com\/[\w-]+\/[\w-]+\/blob\/[0-9a-f]{40}\//);
  });

  it.each(fixtures)("%s converts and validates as a native config, and convert's output loads to the same config", (name) => {
    const text = readFileSync(join(FIXTURES, name), "utf8");
    const direct = load(name);
    expect(direct.jobs.length).toBeGreaterThan(0);
    const converted = convertText(text, {}, name);
    if (!("text" in converted)) throw new Error(`convert failed: ${JSON.stringify(converted)}`);
    expect(converted.text).toMatch(/^\/\/ statepilot configuration converted from ContainerPilot v[23]/);
    const reparsed = validateConfig(interpolateTree(JSON5.parse(converted.text), {}));
    // run listens on the telemetry interface's address, as ContainerPilot did; convert leaves bind to the reader (a comment says so).
    if (direct.telemetry && reparsed.telemetry) reparsed.telemetry.bind = direct.telemetry.bind;
    expect(reparsed).toEqual(direct);
  });

  it("mysql: templating with default, consul as a string, port/health, watch interval, periodic job", () => {
    const c = load("mysql.json5", { SERVICE_NAME: "db" });
    expect(c.consul.address).toBe("consul:8500");
    expect(load("mysql.json5", { CONSUL: "10.0.0.9" }).consul.address).toBe("10.0.0.9:8500");
    expect(load("mysql.json5", { CONSUL_AGENT: "1" }).consul.address).toBe("localhost:8500");
    expect(load("mysql.json5", { CONSUL_AGENT: "1" }).jobs.map((j) => j.name)).toContain("consul-agent");
    expect(load("mysql.json5", { CONSUL_HTTP_ADDR: "http://127.0.0.1:18500" }).consul.address).toBe("http://127.0.0.1:18500");
    expect(c.logging.level).toBe("info");
    expect(c.logging.childOutput).toBe("wrapped");
    const db = c.jobs.find((j) => j.name === "db")!;
    expect(db.service).toMatchObject({ name: "db", port: 3306 });
    expect(db.health).toMatchObject({ interval: 5_000, ttl: 25_000, timeout: 5_000 });
    expect(db.when).toMatchObject({ source: "preStart", once: "exitSuccess" });
    expect(c.jobs.find((j) => j.name === "onChange")?.when).toMatchObject({ source: "watch.db-primary", each: "changed" });
    expect(c.jobs.find((j) => j.name === "snapshot-check")).toMatchObject({ timeout: 600_000, when: { interval: 300_000 } });
    expect(c.watches).toEqual([expect.objectContaining({ name: "db-primary", wait: 10_000 })]);
  });

  it("consul: a job on another job's stopping event becomes its stopping hook", () => {
    const c = load("consul.json5");
    expect(c.jobs.map((j) => j.name)).toEqual(["preStart", "consul"]);
    expect(c.jobs[1]?.hooks.stopping?.exec).toEqual(["consul", "leave"]);
    expect(c.jobs[1]?.exec).toContain("-server");
    expect(load("consul.json5", { CONSUL_DEV: "1" }).jobs[1]?.exec).toContain("-dev");
  });

  it("nginx: registration-only jobs, telemetry metrics under the containerpilot service", () => {
    const c = load("nginx.json5");
    expect(c.jobs.find((j) => j.name === "nginx-public")).toMatchObject({ service: { port: 80, interfaces: ["eth1", "eth0"] } });
    expect(c.jobs.find((j) => j.name === "nginx-public")?.exec).toBeUndefined();
    expect(c.telemetry).toMatchObject({ port: 9090, serviceName: "containerpilot", bind: resolveAddress(["eth0", "inet"]) });
    expect(c.telemetry?.metrics.map((m) => m.name)).toEqual(["nginx_connections_unhandled_total", "nginx_connections_load"]);
    expect(c.jobs.find((j) => j.name === "sensor")).toMatchObject({ when: { interval: 5_000 }, timeout: 5_000 });
    // Upstream bug, caught: with ACME_DOMAIN the file defines the job nginx-public-ssl twice.
    expect(() => load("nginx.json5", { ACME_DOMAIN: "x.example" })).toThrow(/jobs\[5\]\.name: duplicate job name "nginx-public-ssl"/);
  });

  it("v2: services become jobs with a service, backends watches plus onChange jobs, poll → interval", () => {
    const c = load("v2-hello-world-nginx.json5");
    expect(c.jobs.map((j) => j.name)).toEqual(["preStart", "nginx", "onChange-hello", "onChange-world", "onChange-goodbye"]);
    expect(c.jobs[1]).toMatchObject({ service: { name: "nginx", port: 80 }, health: { interval: 10_000, ttl: 25_000 } });
    expect(c.jobs[2]?.when).toMatchObject({ source: "watch.hello", each: "changed" });
    expect(c.watches.map((w) => [w.name, w.wait])).toEqual([["hello", 3_000], ["world", 3_000], ["goodbye", 3_000]]);
    expect(c.logging.level).toBe("debug");
  });

  it("convert keeps {{ .VAR | default }} as ${VAR:-default} and says what each key was", () => {
    const out = convertText(readFileSync(join(FIXTURES, "mysql.json5"), "utf8"), {}, "mysql.json5");
    if (!("text" in out)) throw new Error("convert failed");
    expect(out.text).toContain('name: "${SERVICE_NAME:-mysql}"');
    expect(out.text).toContain('source: "watch.${SERVICE_NAME:-mysql}-primary"');
    expect(out.text).toContain('address: "${CONSUL_HTTP_ADDR:-${CONSUL:-consul}:8500}"');
    expect(out.text).toContain('level: "info"');
    expect(out.text).toContain("{{ if .CONSUL_AGENT }} (line");
    expect(out.text).toMatch(/\/\/ was port of the job: registered in Consul/);
    expect(out.text).toMatch(/\/\/ was interval 10: a blocking query/);
    expect(out.text).toContain('wait: "10s"');
    expect(out.conversion.notes.list(out.conversion.config).length).toBeGreaterThanOrEqual(8);
  });
});

describe("ContainerPilot semantics", () => {
  it("renders Go templates: default (also for empty), env, if/else, range over loop, split/join, trim markers", () => {
    const env = { A: "x", EMPTY: "", LIST: "a,b" };
    expect(renderTemplate('{{ .A }}-{{ .MISSING }}-{{ .EMPTY | default "d" }}-{{ default "e" .MISSING }}', env)).toBe("x--d-e");
    expect(renderTemplate('{{ env "A" }} {{ if .A }}yes{{ else }}no{{ end }} {{ if .NO }}1{{ else if .A }}2{{ end }}', env)).toBe("x yes 2");
    expect(renderTemplate("{{ range $i := loop 1 4 }}{{ $i }},{{ end }}", env)).toBe("1,2,3,");
    expect(renderTemplate('{{ .LIST | split "," | join ";" }}', env)).toBe("a;b");
    expect(renderTemplate('a   {{- " b " -}}   c', env)).toBe("a b c");
    expect(renderTemplate('{{ .A | replaceAll "x" "y" }}{{/* comment */}}', env)).toBe("y");
  });

  it("leaves $VAR and ${VAR} alone in ContainerPilot configs (ContainerPilot had no such interpolation)", () => {
    const c = parseConfigText(`{ consul: "c:8500", jobs: [ { name: "a", exec: "sh -c 'echo $HOME \${X}'" } ] }`, { HOME: "/root", X: "x" });
    expect(c.jobs[0]?.exec).toEqual(["sh", "-c", "'echo", "$HOME", "${X}'"]);
  });

  it("translates when.timeout, and the SIGHUP and global sources", () => {
    const c = parseConfigText(
      `{ consul: "c:8500", jobs: [ { name: "a", exec: "true" }, { name: "b", exec: "true", when: { source: "a", once: "exitSuccess", timeout: "30s" } },
         { name: "c", exec: "true", when: { source: "SIGHUP", each: "SIGHUP" } }, { name: "d", exec: "true", when: { source: "global", once: "startup" } } ] }`,
      {},
    );
    expect(c.jobs[1]?.when).toMatchObject({ timeout: 30_000 });
    expect(c.jobs[2]?.when).toMatchObject({ source: "statepilot", each: "SIGHUP" });
    expect(c.jobs[3]?.when).toMatchObject({ source: "statepilot", once: "startup" });
  });

  it("translates telemetry sensors (v2) into a metric and a sensor, and job logging.raw into output", () => {
    const c = parseConfigText(
      `{ consul: "c:8500", jobs: [ { name: "a", exec: "true", logging: { raw: true } } ],
         telemetry: { port: 9191, sensors: [ { namespace: "app", subsystem: "q", name: "depth", help: "queue depth", type: "gauge", poll: 5, check: "/bin/depth" } ] } }`,
      {},
    );
    expect(c.jobs[0]?.output).toBe("raw");
    expect(c.telemetry?.metrics[0]?.name).toBe("app_q_depth");
    expect(c.telemetry?.sensors[0]).toMatchObject({ metric: "app_q_depth", exec: "/bin/depth", interval: 5_000 });
  });

  it("a key with no equivalent is an error naming the key and what to do, never dropped", () => {
    const err = problemsOf(`{ consul: "c:8500", logging: { output: "/var/log/cp.log" }, jobs: [ { name: "a", exec: "true", tags: ["x"], health: { exec: "true", interval: 1, ttl: 5, logging: { raw: true } } },
      { name: "b", exec: "true", restarts: 3, when: { interval: "5s" } }, { name: "c", exec: "true", when: { source: "a", once: "timerExpired" } } ],
      watches: [ { name: "w", interval: 5, bogus: 1 } ] }`);
    const paths = err.problems.map((p) => p.path);
    expect(paths).toEqual(expect.arrayContaining(["logging.output", "jobs[0].tags", "jobs[0].health.logging", "jobs[1].restarts", "jobs[2].when.once", "watches[0].bogus"]));
    expect(err.message).toContain("ContainerPilot format");
    expect(err.problems.find((p) => p.path === "logging.output")?.message).toContain("stdout");
  });
});

describe("unknown-key errors", () => {
  it("suggest the nearest valid key", () => {
    const err = problemsOf(`{ jobs: [ { name: "a", exec: "true", restart: "never", health: { exec: "true", intervall: "5s" } } ] }`);
    expect(err.problems.find((p) => p.path === "jobs[0].restart")?.message).toBe("unknown key `restart`: did you mean `restarts`?");
    expect(err.problems.find((p) => p.path === "jobs[0].health.intervall")?.message).toBe("unknown key `intervall`: did you mean `interval`?");
  });

  it("give the new place of a ContainerPilot key used in a native config", () => {
    const err = problemsOf(`{ jobs: [ { name: "a", exec: "true", health: { exec: "true", poll: "5s" }, service: { name: "a", port: 1 } } ], watches: [ { name: "w", onChange: "x" } ] }`);
    expect(err.problems.find((p) => p.path === "jobs[0].health.poll")?.message).toBe("unknown key `poll`: ContainerPilot's poll is `interval` here");
    expect(err.problems.find((p) => p.path === "watches[0].onChange")?.message).toContain("when: { source: \"watch.<name>\", each: \"changed\" }");
  });
});

describe("bare $VAR in native configs", () => {
  it("is left for the shell, while ${VAR} forms still interpolate", () => {
    const c = parseConfigText(`{ jobs: [ { name: "a", shell: true, exec: "echo $HOME \${X:-d} $$HOME" } ] }`, { HOME: "/root" });
    expect(c.jobs[0]?.exec).toBe("echo $HOME d $HOME");
  });

  it("nests a variable in a default", () => {
    const c = parseConfigText(`{ node: "\${A:-\${B}-x}" }`, { B: "b" });
    expect(c.node).toBe("b-x");
  });
});

describe("when.timeout (ContainerPilot's give-up on a trigger)", () => {
  it("a job whose event does not come in time never runs and publishes stopped; one whose event comes runs", async () => {
    const bus = new EventBus();
    const logger = createLogger({ level: "silent", format: "json" });
    const seen: string[] = [];
    bus.subscribe("test", (e) => void seen.push(`${e.source}:${e.code}`));
    const config = validateConfig({ jobs: [{ name: "late", exec: ["true"], when: { source: "statepilot", once: "exitMaintenance", timeout: "200ms" } }, { name: "on-time", exec: ["true"], when: { source: "statepilot", once: "startup", timeout: "5s" } }] });
    const jobs = config.jobs.map((c) => new Job(c, { bus, logger, env: () => process.env, defaultOutput: "raw" }));
    try {
      for (const j of jobs) j.activate();
      bus.publish({ code: "startup", source: "statepilot" });
      await new Promise((r) => setTimeout(r, 600));
      expect(jobs[0]?.status()).toMatchObject({ state: "stopped", starts: 0 });
      expect(seen).toContain("late:stopped");
      expect(jobs[1]?.status().starts).toBe(1);
      expect(seen).not.toContain("on-time:stopped");
    } finally {
      await Promise.all(jobs.map((j) => j.stop()));
    }
  });

  it("is refused with interval", () => {
    expect(() => validateConfig({ jobs: [{ name: "a", exec: "true", when: { interval: "1s", timeout: "5s" } }] })).toThrow(/jobs\[0\]\.when\.timeout: timeout applies to once and each/);
  });
});

describe("format detection", () => {
  it("a native config with a ContainerPilot key stays native, and the key is told its new place", () => {
    const err = problemsOf(`{ jobs: [ { name: "a", exec: "x", port: 80, service: { name: "a", port: 80 }, health: { exec: "true" } } ] }`);
    expect(err.message).not.toContain("ContainerPilot format");
    expect(err.problems.find((p) => p.path === "jobs[0].port")?.message).toBe("unknown key `port`: ContainerPilot's job port is `service.port` here (with `service.name`)");
  });

  it("a {{ }} in a comment of a native config is not a template", () => {
    expect(parseConfigText(`// made from {{ if .X }}\n{ node: "n1" }`, {}).node).toBe("n1");
  });
});

describe("ContainerPilot's subcommand flags (containerpilot -putmetric ...)", () => {
  const usage = (argv: string[], env: NodeJS.ProcessEnv = {}) => {
    try {
      containerPilotArgv(argv, env);
    } catch (err) {
      if (err instanceof UsageError) return err.message;
      throw err;
    }
    throw new Error(`expected a UsageError for ${argv.join(" ")}`);
  };

  it("become the native commands, in Go's flag forms, -putmetric and -putenv repeatable", () => {
    expect(containerPilotArgv(["-putmetric", "a=1", "--putmetric=b=2.5"], {})).toEqual(["putmetric", "a=1", "b=2.5"]);
    expect(containerPilotArgv(["-putenv", "K=v", "-putenv", "GONE"], {})).toEqual(["putenv", "K=v", "GONE"]);
    expect(containerPilotArgv(["-reload"], {})).toEqual(["reload"]);
    expect(containerPilotArgv(["-ping=true"], {})).toEqual(["ping"]);
    expect(containerPilotArgv(["-maintenance", "enable"], {})).toEqual(["maintenance", "on"]);
    expect(containerPilotArgv(["-maintenance=disable"], {})).toEqual(["maintenance", "off"]);
    expect(containerPilotArgv(["-version"], {})).toEqual(["--version"]);
    expect(containerPilotArgv(["-putmetric", "a=1", "--socket", "/s", "-o", "json"], {})).toEqual(["putmetric", "a=1", "--socket", "/s", "-o", "json"]);
  });

  it("take the config from -config, else STATEPILOT_CONFIG (left to the native lookup), else CONTAINERPILOT (file:// stripped)", () => {
    expect(containerPilotArgv(["-config", "/etc/cp.json5", "-putmetric", "a=1"], { CONTAINERPILOT: "/other" })).toEqual(["putmetric", "a=1", "--config", "/etc/cp.json5"]);
    expect(containerPilotArgv(["-putmetric", "a=1"], { CONTAINERPILOT: "file:///etc/containerpilot.json" })).toEqual(["putmetric", "a=1", "--config", "/etc/containerpilot.json"]);
    expect(containerPilotArgv(["-putmetric", "a=1"], { CONTAINERPILOT: "/etc/cp.json5", STATEPILOT_CONFIG: "/etc/sp.json5" })).toEqual(["putmetric", "a=1"]);
    expect(containerPilotArgv(["-putmetric", "a=1"], { CONTAINERPILOT: "" })).toEqual(["putmetric", "a=1"]);
  });

  it("leave native argv alone (--config and --version are native)", () => {
    for (const argv of [["putmetric", "a=1"], ["--config", "c", "--", "sh"], ["--version"], [], ["-o", "json", "status"]]) expect(containerPilotArgv(argv, {})).toBeUndefined();
  });

  it("refuse what ContainerPilot refused or statepilot does not do this way, naming the flag and value", () => {
    expect(usage(["-putmetric", "novalue"])).toBe("-putmetric: \"novalue\" is not in the format 'key=val'");
    expect(usage(["-putmetric"])).toMatch(/^-putmetric needs a value/);
    expect(usage(["-maintenance", "sideways"])).toBe('-maintenance: expected enable or disable, got "sideways"');
    expect(usage(["-reload", "-ping"])).toMatch(/give one of .* at a time \(got -reload, -ping\)/);
    expect(usage(["-reload=yes"])).toMatch(/-reload takes no value/);
    expect(usage(["-config", "/etc/cp.json5"])).toMatch(/statepilot run --config FILE/);
    expect(usage(["-template"])).toMatch(/statepilot convert FILE/);
    expect(usage(["-putmetric", "a=1", "extra"])).toMatch(/"extra" is not a ContainerPilot flag/);
    expect(usage(["-putmetric", "a=1"], { CONTAINERPILOT: '{"consul": "c:8500"}' })).toMatch(/^CONTAINERPILOT: an inline JSON config is not supported/);
    expect(usage(["-config", "a", "-config", "b", "-ping"])).toMatch(/-config given 2 times/);
  });
});
