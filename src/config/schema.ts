import { z } from "zod";
import { duration, formatDuration, MAX_DURATION_MS } from "./duration.js";
import { parseConsulAddress, parseInterfaceSpec } from "../discovery/address.js";
import { Templates } from "./templates-schema.js";
import { parseRestorePoint } from "../archive/point.js";

/**
 * The configuration schema: the single source of truth for validation, error messages and the
 * generated reference (docs/configuration.md). Durations are written as text ("5s") and read as
 * milliseconds; z.encode() turns a parsed config back into its written form for `config render`.
 */

/** Any duration: 0 to 596h. */
export const Duration = duration();
/** How long a child process or a request may take. */
const Timeout = duration(100);
/** How often a command is forked or a loop runs. */
const Interval = duration(100);

/** `interfaces`: every entry is read by the parser that resolves it at run time. */
const Interfaces = z.union([z.string(), z.array(z.string()).min(1)]).superRefine((v, ctx) => {
  for (const [i, spec] of (Array.isArray(v) ? v : [v]).entries()) {
    problemOf(() => parseInterfaceSpec(spec), (message) => ctx.addIssue({ code: "custom", message, path: Array.isArray(v) ? [i] : [] }));
  }
});

/** Runs a parser shared with the runtime; its error message becomes a config problem. */
function problemOf(parse: () => unknown, report: (message: string) => void): void {
  try {
    parse();
  } catch (err) {
    report((err as Error).message);
  }
}

export const SIGNALS = ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL", "SIGSTOP", "SIGCONT", "SIGWINCH"] as const;
export const Signal = z.enum(SIGNALS);

export const EVENT_CODES = [
  "startup", "exitSuccess", "exitFailed", "healthy", "unhealthy", "changed", "stopping", "stopped",
  "enterMaintenance", "exitMaintenance", "shutdown", "SIGHUP", "SIGUSR2", "statusChanged",
] as const;
export const EventCode = z.enum(EVENT_CODES);

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const Name = z.string().regex(NAME, { error: "expected a name of letters, digits, '.', '_' or '-'" });

export const Exec = z.union([z.string().min(1), z.array(z.string()).min(1)], {
  error: 'expected a command: a string ("mysqld --port 3306") or an argv array (["mysqld", "--port", "3306"])',
});

export const Hook = z
  .strictObject({
    exec: Exec.describe("Command to run."),
    timeout: Timeout.prefault("10s").describe("Kill the hook after this long."),
  })
  .describe("A command run at a point of the job's life.");

export const When = z
  .strictObject({
    source: z.string().min(1).optional().describe('Name of the job, watch (`watch.<name>`) or template (`template.<name>`, event `changed` after each write) whose event triggers this job, or "statepilot". Any source when omitted.'),
    once: EventCode.optional().describe("Start once, on the first such event."),
    each: EventCode.optional().describe("Start on every such event."),
    interval: Interval.optional().describe("Run periodically."),
    timeout: duration(100).optional().describe("Give up waiting for the event after this long: the job never runs and publishes stopped (ContainerPilot's when.timeout)."),
  })
  .superRefine((w, ctx) => {
    const set = [w.once, w.each, w.interval].filter((x) => x !== undefined).length;
    if (set !== 1) ctx.addIssue({ code: "custom", message: "exactly one of once, each or interval is required", path: [] });
    if (w.interval !== undefined && w.source !== undefined) ctx.addIssue({ code: "custom", message: "source does not apply to interval", path: ["source"] });
    if (w.interval !== undefined && w.timeout !== undefined) ctx.addIssue({ code: "custom", message: "timeout applies to once and each, not interval", path: ["timeout"] });
  })
  .describe("When the job starts; at start-up when omitted.");

export const Backoff = z
  .strictObject({
    enabled: z.boolean().default(true),
    initial: duration(50).prefault("1s").describe("Delay before the first restart."),
    max: duration(50).prefault("30s").describe("Longest delay between restarts."),
    multiplier: z.number().min(1).max(10).default(2),
    resetAfter: duration(1_000).prefault("60s").describe("A run this long resets the delay to `initial`."),
  })
  .describe("Exponential restart backoff.");

export const Health = z
  .strictObject({
    exec: Exec.describe("Health check command; exit 0 is healthy."),
    interval: Interval.prefault("5s"),
    timeout: Timeout.prefault("5s").describe("Kill the check after this long and count it as failed."),
    ttl: duration(1_000).prefault("15s").describe("Consul TTL: the check turns critical if not refreshed within this."),
    shell: z.boolean().default(false),
  })
  .superRefine((h, ctx) => {
    if (h.ttl <= h.interval) ctx.addIssue({ code: "custom", path: ["ttl"], message: `must be longer than interval (${formatDuration(h.interval)})` });
    if (h.timeout > h.ttl) ctx.addIssue({ code: "custom", path: ["timeout"], message: `must not exceed ttl (${formatDuration(h.ttl)})` });
  });

export const Service = z
  .strictObject({
    name: Name.describe("Consul service name."),
    port: z.number().int().min(0).max(65535),
    interfaces: Interfaces
      .default(["eth0", "inet"])
      .describe('Where the advertised address comes from, first match wins: an interface ("eth0", "eth0:inet6"), a CIDR ("10.0.0.0/8"), "inet", "inet6", "static:1.2.3.4".'),
    tags: z.array(z.string()).default([]),
    meta: z.record(z.string(), z.string()).default({}),
    enableTagOverride: z.boolean().default(false),
    deregisterCriticalServiceAfter: duration(60_000, MAX_DURATION_MS, " (Consul's minimum is 1m)").optional().describe("Consul removes the instance after being critical this long."),
    initialStatus: z.enum(["passing", "warning", "critical"]).default("critical"),
  });

export const Restarts = z.union([z.literal("never"), z.literal("unlimited"), z.number().int().min(0)], {
  error: 'expected "never", "unlimited" or a whole number',
});

export const Job = z
  .strictObject({
    name: Name,
    exec: Exec.optional().describe("The command; a job without exec only registers a service and runs its health check."),
    shell: z.boolean().default(false).describe("Run exec through /bin/sh -c (a string exec is otherwise split like a shell would, without one)."),
    main: z.boolean().default(false).describe("statepilot exits when this job is done, with its exit code."),
    env: z.record(z.string(), z.string()).default({}),
    cwd: z.string().optional(),
    when: When.optional(),
    timeout: Timeout.optional().describe("Kill the job's process group after this long."),
    restarts: Restarts.default("never"),
    backoff: Backoff.prefault({}),
    stopSignal: Signal.default("SIGTERM"),
    stopTimeout: Timeout.prefault("10s").describe("SIGKILL the job this long after stopSignal."),
    forwardSignals: z.array(Signal).optional().describe("Signals statepilot receives and passes on; default SIGHUP, SIGUSR1, SIGUSR2 for the main job."),
    hooks: z
      .strictObject({ stopping: Hook.optional(), stopped: Hook.optional() })
      .default({})
      .describe("Commands run before the job is signalled to stop, and after it exited."),
    health: Health.optional(),
    service: Service.optional(),
    output: z.enum(["raw", "wrapped"]).optional().describe("Child output: passed through unchanged, or one log line per output line. Default: logging.childOutput."),
    maintenance: z.enum(["keep", "pause"]).default("keep").describe("pause: stopped while in maintenance, started again after."),
  })
  .superRefine((j, ctx) => {
    if (j.service && !j.health) ctx.addIssue({ code: "custom", path: ["health"], message: "a job with a service needs a health check to keep its TTL check alive" });
    if (j.main && j.when) ctx.addIssue({ code: "custom", path: ["when"], message: "the main job starts at start-up; remove when" });
    if (!j.exec && !j.service) ctx.addIssue({ code: "custom", path: ["exec"], message: "a job needs exec, or a service with a health check" });
  });

export const Watch = z.strictObject({
  name: Name.describe("Consul service to watch; events come from source `watch.<name>`."),
  service: z.string().optional().describe("Service name, when it differs from name."),
  tag: z.string().optional(),
  datacenter: z.string().optional(),
  wait: duration(1_000, 600_000, " (Consul caps blocking queries at 10m)").prefault("30s").describe("Blocking query wait."),
});

export const ConsulSettings = z
  .strictObject({
    address: z
      .string()
      .superRefine((a, ctx) => problemOf(() => parseConsulAddress(a), (message) => ctx.addIssue({ code: "custom", message })))
      .optional()
      .describe("http(s)://host:port or host:port (https with $CONSUL_HTTP_SSL=true); default $CONSUL_HTTP_ADDR, then http://127.0.0.1:8500."),
    token: z.string().optional().describe("ACL token; default the content of the file $CONSUL_HTTP_TOKEN_FILE, then $CONSUL_HTTP_TOKEN (Consul's order). Never logged."),
    datacenter: z.string().optional(),
    caFile: z.string().optional().describe("default $CONSUL_CACERT"),
    certFile: z.string().optional().describe("default $CONSUL_CLIENT_CERT"),
    keyFile: z.string().optional().describe("default $CONSUL_CLIENT_KEY"),
    timeout: Timeout.prefault("5s").describe("Timeout of non-blocking requests."),
  })
  .default({ timeout: 5_000 })
  .describe(
    "How statepilot reaches its Consul agent. The standard variables apply: CONSUL_HTTP_ADDR, CONSUL_HTTP_SSL, CONSUL_HTTP_TOKEN, CONSUL_HTTP_TOKEN_FILE, CONSUL_CACERT, CONSUL_CLIENT_CERT, CONSUL_CLIENT_KEY, CONSUL_TLS_SERVER_NAME (the name the agent's certificate must carry, also sent as SNI) and CONSUL_HTTP_SSL_VERIFY=false (no certificate verification: logged as a warning; for tests only). A file that cannot be read is an error naming its variable.",
  );

const ETCD_ENDPOINT = /^(https?:\/\/)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

export const EtcdStore = z
  .strictObject({
    type: z.literal("etcd"),
    endpoints: z
      .array(z.string().regex(ETCD_ENDPOINT, { error: "expected host:port, http://host:port or https://host:port" }))
      .min(1)
      .describe("Client URLs of the etcd cluster's members (etcd v3 API over gRPC)."),
    username: z.string().min(1).optional().describe("etcd user (etcd auth enabled); its password comes from passwordFile, else $STATEPILOT_ETCD_PASSWORD. Never logged."),
    passwordFile: z.string().min(1).optional().describe("File holding the etcd user's password (one trailing newline dropped)."),
    tls: z
      .strictObject({
        caFile: z.string().min(1).describe("CA bundle the servers' certificates must chain to."),
        certFile: z.string().min(1).optional().describe("Client certificate (etcd --client-cert-auth)."),
        keyFile: z.string().min(1).optional().describe("Its key."),
      })
      .superRefine((t, ctx) => {
        if ((t.certFile === undefined) !== (t.keyFile === undefined)) ctx.addIssue({ code: "custom", path: [], message: "certFile and keyFile go together" });
      })
      .optional()
      .describe("TLS to etcd: required with https:// endpoints, not allowed with http:// ones."),
    timeout: Timeout.prefault("5s").describe("Deadline of every call to etcd."),
    registrations: z
      .enum(["consul", "etcd"])
      .default("consul")
      .describe(
        "Where jobs register their services and `watches` read them: consul (the default: Prometheus's and consul-template's discovery read it there), or etcd, under statepilot/services/<service>/<node> on a lease with the health check's ttl, for confd-style readers (the MySQL autopilot's own instances are published there by the cluster store either way).",
      ),
  })
  .superRefine((e, ctx) => {
    const https = e.endpoints.filter((u) => u.startsWith("https://")).length;
    if (https > 0 && https < e.endpoints.length) ctx.addIssue({ code: "custom", path: ["endpoints"], message: "mixes https:// and plain endpoints" });
    if (https > 0 && !e.tls) ctx.addIssue({ code: "custom", path: ["tls"], message: "https:// endpoints need tls.caFile" });
    if (https === 0 && e.tls) ctx.addIssue({ code: "custom", path: ["tls"], message: "tls is set but the endpoints are not https://" });
    if (e.passwordFile !== undefined && e.username === undefined) ctx.addIssue({ code: "custom", path: ["passwordFile"], message: "a password needs a username" });
  });

export const ClusterStoreSettings = z
  .discriminatedUnion("type", [z.strictObject({ type: z.literal("consul") }), EtcdStore], { error: 'expected a store with type "consul" or "etcd"' })
  .default({ type: "consul" })
  .describe("Where the MySQL autopilot keeps its leader lock, members and cluster records: the Consul agent of `consul` (default), or an etcd v3 cluster (leases for the leader key and liveness). Jobs' service registrations stay in Consul unless the etcd store's `registrations` says etcd.");

export const Logging = z
  .strictObject({
    level: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
    format: z.enum(["auto", "json", "pretty"]).default("auto").describe("auto: pretty on a terminal, JSON otherwise."),
    childOutput: z.enum(["raw", "wrapped"]).default("raw"),
  })
  .default({ level: "info", format: "auto", childOutput: "raw" })
  .describe("statepilot's own log (pino JSON) and what happens to the jobs' output.");

export const Control = z
  .strictObject({
    socket: z.string().default("/var/run/statepilot.sock").describe("Unix socket of the control plane (mode 0600)."),
  })
  .default({ socket: "/var/run/statepilot.sock" })
  .describe("The control plane: HTTP over a unix socket, used by the statepilot CLI.");

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

export const UserMetric = z
  .strictObject({
    name: z.string().regex(METRIC_NAME, { error: "expected a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)" }).refine((n) => !n.startsWith("statepilot_"), { error: "the statepilot_ prefix is reserved for built-in metrics" }),
    help: z.string().min(1),
    type: z.enum(["counter", "gauge", "histogram", "summary"]),
    labels: z.array(z.string().regex(LABEL_NAME, { error: "expected a label name" })).default([]),
    buckets: z.array(z.number()).min(1).optional().describe("Histogram buckets (upper bounds)."),
    percentiles: z.array(z.number().gt(0).lt(1)).min(1).optional().describe("Summary quantiles, e.g. [0.5, 0.9, 0.99]."),
  })
  .superRefine((m, ctx) => {
    if (m.buckets && m.type !== "histogram") ctx.addIssue({ code: "custom", path: ["buckets"], message: "buckets apply to histograms only" });
    if (m.percentiles && m.type !== "summary") ctx.addIssue({ code: "custom", path: ["percentiles"], message: "percentiles apply to summaries only" });
    if (m.buckets?.some((b, i) => i > 0 && b <= m.buckets![i - 1]!)) ctx.addIssue({ code: "custom", path: ["buckets"], message: "buckets must be increasing" });
  })
  .describe("A metric fed by `statepilot putmetric` or a sensor.");

export const Sensor = z
  .strictObject({
    metric: z.string().describe("Name of a metric declared in telemetry.metrics."),
    exec: Exec.describe("Command whose stdout is a number."),
    interval: Interval.prefault("10s"),
    timeout: Timeout.prefault("5s"),
    labels: z.record(z.string(), z.string()).default({}).describe("Label values for the metric's labels."),
  })
  .describe("Runs a command every interval and records the number it prints (gauge: set, counter: add, histogram/summary: observe).");

/** The name of an environment variable that holds a secret (the secret itself never goes in the config). */
const EnvVarName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: "expected the name of an environment variable" });

export const TelemetryAuth = z
  .strictObject({
    tokenFile: z.string().min(1).optional().describe("File holding the token (surrounding whitespace ignored, as in Prometheus' credentials_file); `config check` and start-up refuse a missing, unreadable or empty file. Read at start-up."),
    tokenEnv: EnvVarName.optional()
      .describe("Or: the name of the environment variable holding the token (it must be set and non-empty)."),
    metrics: z.boolean().default(false).describe("Require the token on /metrics too (Prometheus: `authorization: { credentials_file: ... }` in the scrape config)."),
  })
  .superRefine((a, ctx) => {
    if ((a.tokenFile === undefined) === (a.tokenEnv === undefined)) ctx.addIssue({ code: "custom", path: [], message: "exactly one of tokenFile or tokenEnv is required (the token itself never goes in the config)" });
  })
  .describe("A bearer token (`Authorization: Bearer <token>`) required on /status, and for the node's view in the load-balancer checks' bodies (their 200/503 needs none); on /metrics too with `metrics: true`. Missing or wrong: 401.");

export const Telemetry = z
  .strictObject({
    port: z.number().int().min(0).max(65535).default(9090),
    bind: z
      .string()
      .refine((b) => b === "localhost" || z.union([z.ipv4(), z.ipv6()]).safeParse(b).success, { error: 'expected an IP address ("127.0.0.1", "10.0.0.5"; "0.0.0.0" or "::" for every interface) or "localhost"' })
      .default("0.0.0.0")
      .describe("Address the HTTP server listens on. The default, every interface, serves /status to anyone who can reach the port unless `auth` is set."),
    auth: TelemetryAuth.optional(),
    interfaces: Interfaces.default(["eth0", "inet"]).describe("Where the address advertised in Consul comes from (as in service.interfaces)."),
    register: z.boolean().default(true).describe("Register the endpoint in Consul so Prometheus consul_sd_configs finds it."),
    serviceName: Name.default("statepilot"),
    tags: z.array(z.string()).default([]),
    interval: duration(1_000).prefault("5s").describe("How often the endpoint's own TTL check is refreshed."),
    ttl: duration(1_000).prefault("15s"),
    metrics: z.array(UserMetric).default([]),
    sensors: z.array(Sensor).default([]),
  })
  .superRefine((t, ctx) => {
    if (t.ttl <= t.interval) ctx.addIssue({ code: "custom", path: ["ttl"], message: `must be longer than interval (${formatDuration(t.interval)})` });
    const names = new Map<string, number>();
    t.metrics.forEach((m, i) => {
      if (names.has(m.name)) ctx.addIssue({ code: "custom", path: ["metrics", i, "name"], message: `duplicate metric "${m.name}"` });
      names.set(m.name, i);
    });
    t.sensors.forEach((s, i) => {
      const idx = names.get(s.metric);
      if (idx === undefined) {
        ctx.addIssue({ code: "custom", path: ["sensors", i, "metric"], message: `no metric "${s.metric}" in telemetry.metrics` });
        return;
      }
      const declared = t.metrics[idx]!.labels;
      const given = Object.keys(s.labels);
      if (declared.length !== given.length || declared.some((l) => !given.includes(l))) {
        ctx.addIssue({ code: "custom", path: ["sensors", i, "labels"], message: `must set exactly the labels of ${s.metric}: [${declared.join(", ")}]` });
      }
    });
  })
  .describe("The Prometheus endpoint (/metrics, /status).");

export const Credentials = z
  .strictObject({
    rootPassword: z.string().optional().describe("Password of root@localhost; default $MYSQL_ROOT_PASSWORD or $MARIADB_ROOT_PASSWORD. Required. Never logged."),
    database: z.string().optional().describe("Database created on the first primary; default $MYSQL_DATABASE or $MARIADB_DATABASE."),
    user: z.string().optional().describe("Application user with all privileges on `database`; default $MYSQL_USER or $MARIADB_USER."),
    password: z.string().optional().describe("The application user's password; default $MYSQL_PASSWORD or $MARIADB_PASSWORD. Never logged."),
    replUser: z.string().optional().describe('Replication user (REPLICATION SLAVE only); default $MYSQL_REPL_USER, then "repl". Backups use a separate local-only account.'),
    replPassword: z.string().optional().describe("Its password; default $MYSQL_REPL_PASSWORD. Required. Never logged."),
    rootHosts: z
      .array(z.string().min(1).max(255))
      .min(1)
      .default(["localhost"])
      .describe('Hosts root may connect from. The default, ["localhost"], is the unix socket only; root accounts on any other host are dropped at start.'),
  })
  .prefault({})
  .describe("Credentials; each falls back to the official images' environment variables.");

export const Lossless = z
  .strictObject({
    enabled: z.boolean().default(false).describe("Semi-synchronous replication with the AFTER_SYNC wait point: a commit is acknowledged only once a replica has it."),
    ackTimeout: Timeout.prefault("1h").describe("After this long without a replica's acknowledgement the primary falls back to asynchronous replication (and logs it)."),
  })
  .default({ enabled: false, ackTimeout: 3_600_000 });

export const LocalStore = z
  .strictObject({
    type: z.literal("local"),
    path: z.string().default("/var/lib/statepilot/snapshots").describe("Directory (a shared volume, for other nodes to restore from)."),
  })
  .describe("Snapshots in a local directory: the embedded default.");

export const S3Store = z
  .strictObject({
    type: z.literal("s3"),
    bucket: z.string().min(3),
    prefix: z.string().default("statepilot").describe("Key prefix; snapshots live under <prefix>/<cluster>/<id>/."),
    region: z.string().default("us-east-1"),
    endpoint: z.string().optional().describe("For S3-compatible stores such as MinIO, e.g. http://minio:9000."),
    forcePathStyle: z.boolean().default(false).describe("Path-style addressing (MinIO needs it)."),
    accessKeyId: z.string().optional().describe("Default: the AWS SDK's provider chain (AWS_ACCESS_KEY_ID, profiles, instance roles)."),
    secretAccessKey: z.string().optional().describe("Never logged."),
    serverSideEncryption: z.enum(["AES256", "aws:kms"]).optional(),
    kmsKeyId: z.string().optional(),
  })
  .superRefine((s, ctx) => {
    if ((s.accessKeyId === undefined) !== (s.secretAccessKey === undefined)) ctx.addIssue({ code: "custom", path: ["secretAccessKey"], message: "accessKeyId and secretAccessKey go together" });
    if (s.kmsKeyId && s.serverSideEncryption !== "aws:kms") ctx.addIssue({ code: "custom", path: ["kmsKeyId"], message: 'applies only with serverSideEncryption "aws:kms"' });
  })
  .describe("Snapshots in S3 or an S3-compatible store, as multipart uploads.");

export const Archive = z
  .strictObject({
    enabled: z.boolean().default(false).describe("Stream the cluster's binlogs into the snapshot store continuously (one node at a time, a healthy replica preferred), for restores to any second or GTID."),
    segmentEvery: duration(100, 60_000).prefault("1s").describe("Upload what was received at least this often: the archive's recovery point lags the primary by about this much."),
    segmentBytes: z.number().int().min(65_536).default(8 * 1024 * 1024).describe("Also cut a segment at this many bytes (a segment is held in memory while it uploads)."),
    spoolDir: z.string().optional().describe("Where the stream lands before it is uploaded; default statepilot-binlog-spool beside the datadir (never inside it)."),
    spoolLimit: z.number().int().min(1024 * 1024).default(1024 * 1024 * 1024).describe("Bytes the spool may hold while the store is unreachable; past it the stream stops (the primary is never slowed) and resumes from the archive's head once the backlog is uploaded."),
    checkEvery: duration(200, 60_000).prefault("1s").describe("How often a node checks the archiver's lock and its source."),
    epochEvery: duration(60_000).prefault("24h").describe("The stream is restarted (a new epoch, continuing by GTID) this often, so that retention can drop what no kept snapshot needs: segments go a whole epoch at a time, once the oldest kept snapshot is past its end."),
  })
  .prefault({})
  .describe("Continuous binlog archive (MariaDB): mariadb-binlog --read-from-remote-server --raw --stop-never from the current primary, cut at transaction boundaries into segments named by GTID range and time.");

const SnapshotStore = z.discriminatedUnion("type", [LocalStore, S3Store], { error: 'expected a store with type "local" or "s3"' });

const RestoreFrom = z
  .strictObject({
    cluster: z.string().min(1).describe("The cluster whose snapshots and binlog archive to start from."),
    to: z
      .string()
      .superRefine((text, ctx) => problemOf(() => parseRestorePoint(text), (message) => ctx.addIssue({ code: "custom", message })))
      .describe("The point: a time (2026-12-03T10:15:00Z: the transactions that started before it) or a GTID position (0-1-42: up to and including it)."),
    store: SnapshotStore.optional().describe("The store holding that cluster's snapshots and archive; default this cluster's own store."),
  })
  .describe(
    "A new cluster started as another was at a point (MariaDB): while this cluster has no snapshot of its own, a node starting with an empty datadir restores that cluster's newest snapshot taken before the point plus its archived binlogs up to the point, instead of starting empty. Once this cluster has a snapshot, new nodes start from that.",
  );

export const Snapshots = z
  .strictObject({
    store: SnapshotStore.default({ type: "local", path: "/var/lib/statepilot/snapshots" }),
    interval: duration(1_000).optional().describe("Take a snapshot when the latest is older than this (cluster-wide, one at a time). None when omitted."),
    afterBinlogRotations: z.number().int().min(1).optional().describe("Also take one after this many binlog rotations on the snapshotting node since the latest."),
    afterBinlogBytes: z.number().int().min(1).optional().describe("Also take one after this many binlog bytes since the latest."),
    compression: z.enum(["none", "gzip"]).default("none"),
    keepLast: z.number().int().min(1).default(7).describe("Retention: keep at least the newest N snapshots."),
    keepDays: z.number().positive().optional().describe("Retention: also keep every snapshot newer than this many days; older ones beyond keepLast are pruned."),
    restoreOnEmpty: z.boolean().default(true).describe("A node starting with an empty datadir in an initialised cluster restores the latest snapshot instead of replicating everything."),
    partSize: z.number().int().min(5 * 1024 * 1024).optional().describe("Multipart part size in bytes (the upload holds three parts in memory); default 32 MiB, larger for a datadir over about 192 GB so that a backup stays under 10,000 parts."),
    checkEvery: duration(1_000).prefault("10s").describe("How often a node checks whether a snapshot is due."),
    archive: Archive,
    restoreFrom: RestoreFrom.optional(),
  })
  .describe("Hot backups streamed to a store (mariabackup --stream=xbstream), and restores of new nodes from them.");

export const Failsafe = z
  .strictObject({
    enabled: z.boolean().default(false).describe("When the cluster store is unreachable, the primary keeps writing while every member it knew alive answers it directly (POST /failsafe on their telemetry port) that it sees no other primary; a member that accepts does not run for primary for lease + lock-delay. Off: a primary that cannot reach the store fences at fenceAfter."),
    tokenFile: z.string().min(1).optional().describe("File holding the cluster secret the members' requests carry (Authorization: Bearer); the same on every node. Read at start-up."),
    tokenEnv: EnvVarName.optional()
      .describe("Or: the name of the environment variable holding the cluster secret."),
  })
  .superRefine((f, ctx) => {
    if (f.enabled && (f.tokenFile === undefined) === (f.tokenEnv === undefined)) ctx.addIssue({ code: "custom", path: [], message: "failsafe mode needs the cluster secret: exactly one of tokenFile or tokenEnv (the secret itself never goes in the config)" });
  })
  .describe("Failsafe mode (after Patroni's failsafe_mode): keep the primary writable through a store outage while every member confirms it directly.");

export const Mysql = z
  .strictObject({
    cluster: Name.default("default").describe("Cluster name; Consul keys live under statepilot/<cluster>/."),
    serviceName: Name.default("mysql").describe("Consul service of every node; the primary also registers <serviceName>-primary."),
    binary: z.string().optional().describe("mysqld or mariadbd to run; default the first of mariadbd, mysqld found on PATH or in sbin."),
    datadir: z.string().default("/var/lib/mysql"),
    socket: z.string().optional().describe("Unix socket statepilot uses to manage the server; default <datadir>/mysqld.sock."),
    bind: z.string().optional().describe("bind-address of mysqld. Default: the address this node advertises (from `interfaces`), so mysqld listens on no other interface; `0.0.0.0` listens on all."),
    port: z.number().int().min(1).max(65535).default(3306),
    interfaces: Interfaces.default(["eth0", "inet"]).describe("Where the advertised address comes from (as in service.interfaces)."),
    serverId: z.number().int().min(1).max(4294967295).optional().describe("server_id; default a number unique in the cluster, allocated in Consul once and kept in the datadir."),
    defaultsFile: z.string().optional().describe('Option file for mysqld (--defaults-file), or "none" for --no-defaults; default the server\'s own search (my.cnf).'),
    args: z.array(z.string()).default([]).describe("Extra mysqld arguments, e.g. [\"--innodb-buffer-pool-size=1G\"]."),
    runAs: z.string().optional().describe("--user for mysqld when statepilot runs as root; default mysql (root in the lab)."),
    credentials: Credentials,
    initDir: z.string().default("/docker-entrypoint-initdb.d").describe("*.sql and *.sh files run once, on the cluster's first primary."),
    interval: Interval.prefault("500ms").describe("HA loop period: observe, decide, refresh the TTL check (or the etcd lease)."),
    checkTtl: duration(1_000).prefault("2s").describe("TTL of the node's Consul check; the session holding the lock follows it. On etcd: the node's lease TTL, in whole seconds, at least 2s."),
    sessionTtl: duration(10_000, 86_400_000, " (Consul accepts session TTLs from 10s to 24h)").prefault("10s").describe("Session TTL, a backstop if the check stays passing while the loop is stuck (Consul's minimum is 10s)."),
    lockDelay: duration(0, 60_000, " (Consul caps lock-delay at 60s)").prefault("500ms").describe("Consul lock-delay: after an invalidated session, nobody can take the lock for this long (on etcd: after a candidate saw the leadership lost)."),
    fenceAfter: Duration.prefault("1.5s").describe("A primary that cannot confirm its lock for this long makes itself read-only. Must be shorter than min(checkTtl, sessionTtl) + lockDelay."),
    fenceBy: z
      .enum(["auto", "read-only", "kill"])
      .default("auto")
      .describe("How a primary that lost (or cannot confirm) the lock fences itself: read-only plus killed client connections, or SIGKILL of mysqld, after which crash recovery as a replica rolls back any unacknowledged binlog tail. auto: kill in lossless mode, read-only otherwise."),
    maximumLagOnFailover: Duration.prefault("10s").describe("A replica further behind than this does not race for the lock."),
    healthyLag: Duration.prefault("30s").describe("A replica lagging more than this is reported as warning (served by /replica only with a larger ?lag)."),
    nofailover: z.boolean().default(false).describe("Never take the lock (a reporting or backup replica)."),
    promoteTimeout: duration(1_000).prefault("60s").describe("How long a new primary waits to apply its relay log before giving the lock back."),
    switchoverTimeout: duration(1_000).prefault("30s").describe("How long a switchover waits for the target to catch up."),
    memberExpiry: duration(60_000).prefault("1h").describe("The primary removes the record of a member that has not been alive in the store for this long (containers replaced under new names). In lossless mode a removed member no longer holds up an election."),
    stopWithSupervisor: z.boolean().default(true).describe("mysqld is killed if statepilot dies (Linux parent-death signal): no writable primary is ever left without its fencing supervisor."),
    stopTimeout: duration(1_000).prefault("60s").describe("Time mysqld gets to shut down cleanly before SIGKILL."),
    lossless: Lossless,
    failsafe: Failsafe.prefault({}),
    snapshots: Snapshots.prefault({}),
  })
  .superRefine((m, ctx) => {
    const leaseFloor = Math.min(m.checkTtl, m.sessionTtl) + m.lockDelay;
    if (m.fenceAfter >= leaseFloor) {
      ctx.addIssue({
        code: "custom",
        path: ["fenceAfter"],
        message: `must be shorter than min(checkTtl, sessionTtl) + lockDelay = ${formatDuration(leaseFloor)}, or another node could take the lock before this one fences itself`,
      });
    }
    if (m.fenceAfter < 2 * m.interval) ctx.addIssue({ code: "custom", path: ["fenceAfter"], message: `must be at least 2 × interval (${formatDuration(2 * m.interval)}), or one slow loop fences a healthy primary` });
    if (m.checkTtl < 2 * m.interval) ctx.addIssue({ code: "custom", path: ["checkTtl"], message: `must be at least 2 × interval (${formatDuration(2 * m.interval)})` });
  })
  .describe("The MySQL/MariaDB autopilot: runs mysqld as the main job, elects a primary through a Consul lock, configures GTID replicas, fails over and fences.");

export const Config = z
  .strictObject({
    extends: z.string().optional().describe("A base config file (path relative to this one): its settings apply first, this file's objects merge over them key by key; arrays, values and objects of another `type` replace."),
    node: Name.optional().describe("This node's name; default the hostname. Service IDs are `<service>-<node>`."),
    consul: ConsulSettings,
    store: ClusterStoreSettings,
    logging: Logging,
    control: Control,
    reloadOnSighup: z.boolean().default(false).describe("SIGHUP reloads the config instead of being forwarded."),
    stopTimeout: duration(1_000).prefault("30s").describe("Deadline for the whole shutdown."),
    jobs: z.array(Job).default([]).describe("Processes statepilot runs: the app (main), helpers, periodic tasks, hooks."),
    watches: z.array(Watch).default([]).describe("Consul services to follow; their changes are events jobs can start on."),
    templates: Templates,
    telemetry: Telemetry.optional(),
    mysql: Mysql.optional(),
  })
  .superRefine((c, ctx) => {
    const names = new Map<string, number>();
    c.jobs.forEach((j, i) => {
      if (names.has(j.name)) ctx.addIssue({ code: "custom", path: ["jobs", i, "name"], message: `duplicate job name "${j.name}" (also jobs[${names.get(j.name)}])` });
      names.set(j.name, i);
    });
    if (c.mysql?.failsafe.enabled && !c.telemetry) ctx.addIssue({ code: "custom", path: ["mysql", "failsafe", "enabled"], message: "failsafe mode needs a telemetry section: members answer the primary on the node's HTTP port" });
    const mains = c.jobs.flatMap((j, i) => (j.main ? [i] : []));
    if (c.mysql && mains.length) ctx.addIssue({ code: "custom", path: ["jobs", mains[0]!, "main"], message: "with a mysql section, mysqld is the main job; drop main here" });
    if (mains.length > 1) ctx.addIssue({ code: "custom", path: ["jobs", mains[1]!, "main"], message: `only one job can be main (also jobs[${mains[0]}])` });
    const watchNames = new Set<string>();
    c.watches.forEach((w, i) => {
      if (watchNames.has(w.name)) ctx.addIssue({ code: "custom", path: ["watches", i, "name"], message: `duplicate watch name "${w.name}"` });
      watchNames.add(w.name);
    });
    const sources = new Set(["statepilot", ...names.keys(), ...[...watchNames].map((w) => `watch.${w}`), ...c.templates.map((t) => `template.${t.name}`)]);
    c.jobs.forEach((j, i) => {
      const src = j.when?.source;
      if (src !== undefined && !sources.has(src)) {
        ctx.addIssue({ code: "custom", path: ["jobs", i, "when", "source"], message: `unknown source "${src}"; expected "statepilot", a job name, watch.<name> or template.<name>` });
      }
      if (src === j.name) ctx.addIssue({ code: "custom", path: ["jobs", i, "when", "source"], message: "a job cannot wait for its own events" });
    });
    const services = new Map<string, number>();
    c.jobs.forEach((j, i) => {
      if (!j.service) return;
      if (services.has(j.service.name)) ctx.addIssue({ code: "custom", path: ["jobs", i, "service", "name"], message: `service "${j.service.name}" is already registered by jobs[${services.get(j.service.name)}]` });
      services.set(j.service.name, i);
    });
  });

export type Config = z.output<typeof Config>;
export type ConfigInput = z.input<typeof Config>;
export type JobConfig = z.output<typeof Job>;
export type WatchConfig = z.output<typeof Watch>;
export type HealthConfig = z.output<typeof Health>;
export type ServiceConfig = z.output<typeof Service>;
export type HookConfig = z.output<typeof Hook>;
export type MysqlConfig = z.output<typeof Mysql>;
export type ClusterStoreConfig = z.output<typeof ClusterStoreSettings>;
/** A cluster store as a connection needs it (where jobs register is the supervisor's concern). */
export type ClusterStoreConnection = ClusterStoreConfig extends infer T ? (T extends { type: "etcd" } ? Omit<T, "registrations"> : T) : never;
export type SnapshotsConfig = z.output<typeof Snapshots>;
export type StoreConfig = SnapshotsConfig["store"];
export type ArchiveConfig = z.output<typeof Archive>;
export type TelemetryConfig = z.output<typeof Telemetry>;
export type UserMetricConfig = z.output<typeof UserMetric>;
export type EventCodeName = z.output<typeof EventCode>;
export type SignalName = z.output<typeof Signal>;
