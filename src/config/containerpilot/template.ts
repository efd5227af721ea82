/**
 * ContainerPilot's Go text/template rendering of a config file, before it is parsed: the data is
 * the environment (`{{ .VAR }}`, an unset variable is ""), with Go's `if`/`else`/`range`/`with`,
 * pipelines, and ContainerPilot's functions `default`, `env`, `split`, `join`, `replaceAll`,
 * `regexReplaceAll`, `loop`, plus Go's `eq`, `ne`, `lt`, `le`, `gt`, `ge`, `not`, `and`, `or`,
 * `len`, `index`, `print`, `printf`.
 */
export class TemplateError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(`line ${line}: ${message}`);
    this.name = "TemplateError";
  }
}

type Value = string | number | boolean | Value[] | undefined;

type Node =
  | { kind: "text"; text: string }
  | { kind: "action"; pipe: Pipe; line: number }
  | { kind: "if"; branches: Array<{ pipe: Pipe; body: Node[] }>; otherwise: Node[] }
  | { kind: "range"; vars: string[]; pipe: Pipe; body: Node[]; otherwise: Node[] }
  | { kind: "with"; pipe: Pipe; body: Node[]; otherwise: Node[] };

interface Pipe {
  decl: string[];
  cmds: Operand[][];
  line: number;
  source: string;
}

type Operand =
  | { kind: "field"; name: string }
  | { kind: "dot" }
  | { kind: "var"; name: string }
  | { kind: "lit"; value: Value }
  | { kind: "ident"; name: string }
  | { kind: "paren"; pipe: Pipe };

/** Does this text use Go template actions? */
export const hasTemplate = (text: string): boolean => /\{\{[\s\S]*?\}\}/.test(text);

interface Token {
  kind: "text" | "action";
  text: string;
  line: number;
}

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const lineAt = (pos: number) => src.slice(0, pos).split("\n").length;
  while (i < src.length) {
    const open = src.indexOf("{{", i);
    if (open < 0) {
      out.push({ kind: "text", text: src.slice(i), line: lineAt(i) });
      break;
    }
    let text = src.slice(i, open);
    let start = open + 2;
    if (src[start] === "-" && /\s/.test(src[start + 1] ?? "")) {
      text = text.replace(/\s+$/, "");
      start++;
    }
    if (text) out.push({ kind: "text", text, line: lineAt(i) });
    const close = findClose(src, start);
    if (close < 0) throw new TemplateError(lineAt(open), "unclosed action ({{ without }})");
    let body = src.slice(start, close);
    let next = close + 2;
    if (/\s-$/.test(body)) {
      body = body.slice(0, -1);
      while (next < src.length && /\s/.test(src[next]!)) next++;
    }
    out.push({ kind: "action", text: body.trim(), line: lineAt(open) });
    i = next;
  }
  return out;
}

/** The `}}` closing an action, skipping quoted strings. */
function findClose(src: string, from: number): number {
  for (let i = from; i < src.length; i++) {
    const c = src[i];
    if (c === '"' || c === "`") {
      for (i++; i < src.length && src[i] !== c; i++) if (c === '"' && src[i] === "\\") i++;
    } else if (c === "}" && src[i + 1] === "}") return i;
  }
  return -1;
}

function lexAction(text: string, line: number): string[] {
  const toks: string[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"') {
      let j = i + 1;
      for (; j < text.length && text[j] !== '"'; j++) if (text[j] === "\\") j++;
      if (j >= text.length) throw new TemplateError(line, `unterminated string in {{ ${text} }}`);
      toks.push(text.slice(i, j + 1));
      i = j + 1;
    } else if (c === "`") {
      const j = text.indexOf("`", i + 1);
      if (j < 0) throw new TemplateError(line, `unterminated raw string in {{ ${text} }}`);
      toks.push(text.slice(i, j + 1));
      i = j + 1;
    } else if ("|(),".includes(c)) {
      toks.push(c);
      i++;
    } else if (c === ":" && text[i + 1] === "=") {
      toks.push(":=");
      i += 2;
    } else if (c === "=") {
      toks.push("=");
      i++;
    } else {
      let j = i;
      while (j < text.length && !/[\s|(),"`]/.test(text[j]!) && !(text[j] === ":" && text[j + 1] === "=")) j++;
      toks.push(text.slice(i, j));
      i = j;
    }
  }
  return toks;
}

function parsePipe(text: string, line: number): Pipe {
  const toks = lexAction(text, line);
  let pos = 0;
  const decl: string[] = [];
  const declEnd = toks.findIndex((t) => t === ":=" || t === "=");
  if (declEnd > 0 && toks.slice(0, declEnd).every((t) => t.startsWith("$") || t === ",")) {
    decl.push(...toks.slice(0, declEnd).filter((t) => t !== ","));
    pos = declEnd + 1;
  }
  const parseUntil = (stop: string | undefined): Operand[][] => {
    const cmds: Operand[][] = [[]];
    while (pos < toks.length) {
      const t = toks[pos++]!;
      if (t === stop) return cmds;
      if (t === "|") {
        cmds.push([]);
        continue;
      }
      const cur = cmds[cmds.length - 1]!;
      if (t === "(") {
        const inner = parseUntil(")");
        cur.push({ kind: "paren", pipe: { decl: [], cmds: inner, line, source: text } });
      } else cur.push(operand(t, line));
    }
    if (stop) throw new TemplateError(line, `missing ${stop} in {{ ${text} }}`);
    return cmds;
  };
  const cmds = parseUntil(undefined);
  if (cmds.some((c) => c.length === 0)) throw new TemplateError(line, `empty command in {{ ${text} }}`);
  return { decl, cmds, line, source: text };
}

function operand(t: string, line: number): Operand {
  if (t === ".") return { kind: "dot" };
  if (t.startsWith(".")) return { kind: "field", name: t.slice(1) };
  if (t.startsWith("$")) return { kind: "var", name: t };
  if (t.startsWith('"')) return { kind: "lit", value: JSON.parse(t) as string };
  if (t.startsWith("`")) return { kind: "lit", value: t.slice(1, -1) };
  if (/^-?\d+(\.\d+)?$/.test(t)) return { kind: "lit", value: Number(t) };
  if (t === "true" || t === "false") return { kind: "lit", value: t === "true" };
  if (t === "nil") return { kind: "lit", value: undefined };
  if (/^[A-Za-z_]\w*$/.test(t)) return { kind: "ident", name: t };
  throw new TemplateError(line, `unexpected "${t}"`);
}

function parse(tokens: Token[]): Node[] {
  let pos = 0;
  const block = (ends: string[]): { nodes: Node[]; end: string; line: number } => {
    const nodes: Node[] = [];
    while (pos < tokens.length) {
      const t = tokens[pos++]!;
      if (t.kind === "text") {
        nodes.push({ kind: "text", text: t.text });
        continue;
      }
      const a = t.text;
      if (a.startsWith("/*")) continue;
      const word = /^(\w+)\b\s*(.*)$/s.exec(a);
      const kw = word?.[1];
      const rest = word?.[2] ?? "";
      if (kw === "end" || kw === "else") {
        if (!ends.length) throw new TemplateError(t.line, `unexpected {{ ${a} }}`);
        return { nodes, end: a, line: t.line };
      }
      if (kw === "if" || kw === "with") {
        const branches: Array<{ pipe: Pipe; body: Node[] }> = [];
        let pipe = parsePipe(rest, t.line);
        let otherwise: Node[] = [];
        for (;;) {
          const b = block(["end", "else"]);
          branches.push({ pipe, body: b.nodes });
          if (b.end === "end") break;
          const elseIf = /^else\s+if\s+(.*)$/s.exec(b.end);
          if (elseIf && kw === "if") {
            pipe = parsePipe(elseIf[1]!, b.line);
            continue;
          }
          const e = block(["end"]);
          if (e.end !== "end") throw new TemplateError(e.line, "expected {{ end }}");
          otherwise = e.nodes;
          break;
        }
        if (kw === "if") nodes.push({ kind: "if", branches, otherwise });
        else nodes.push({ kind: "with", pipe: branches[0]!.pipe, body: branches[0]!.body, otherwise });
        continue;
      }
      if (kw === "range") {
        const pipe = parsePipe(rest, t.line);
        const b = block(["end", "else"]);
        let otherwise: Node[] = [];
        if (b.end !== "end") otherwise = block(["end"]).nodes;
        nodes.push({ kind: "range", vars: pipe.decl, pipe: { ...pipe, decl: [] }, body: b.nodes, otherwise });
        continue;
      }
      if (kw === "define" || kw === "template" || kw === "block") throw new TemplateError(t.line, `{{ ${kw} }} is not supported`);
      nodes.push({ kind: "action", pipe: parsePipe(a, t.line), line: t.line });
    }
    if (ends.length) throw new TemplateError(tokens[tokens.length - 1]?.line ?? 1, "missing {{ end }}");
    return { nodes, end: "", line: 0 };
  };
  return block([]).nodes;
}

const truthy = (v: Value): boolean => (Array.isArray(v) ? v.length > 0 : v !== undefined && v !== "" && v !== 0 && v !== false);

function print(v: Value): string {
  if (v === undefined) return "";
  if (Array.isArray(v)) return `[${v.map(print).join(" ")}]`;
  return String(v);
}

const str = (v: Value): string => print(v);
const num = (v: Value, line: number): number => {
  const n = typeof v === "number" ? v : Number(str(v));
  if (!Number.isFinite(n)) throw new TemplateError(line, `expected a number, got "${str(v)}"`);
  return Math.trunc(n);
};

function printf(format: string, args: Value[]): string {
  let i = 0;
  return format.replace(/%([%vsdq])/g, (_, verb: string) => {
    if (verb === "%") return "%";
    const a = args[i++];
    if (verb === "q") return JSON.stringify(str(a));
    return print(a);
  });
}

type Fn = (args: Value[], line: number) => Value;

const FUNCS: Record<string, Fn> = {
  // ContainerPilot's default also replaces an empty value.
  default: ([d, v]) => (truthy(v) ? v : d),
  env: ([name], _line) => process.env[str(name)] ?? "",
  split: ([sep, s]) => str(s).split(str(sep)),
  join: ([sep, arr]) => (Array.isArray(arr) ? arr.map(print).join(str(sep)) : str(arr)),
  replaceAll: ([from, to, s]) => str(s).split(str(from)).join(str(to)),
  regexReplaceAll: ([re, to, s]) => str(s).replace(new RegExp(str(re), "g"), str(to).replace(/\$\{?(\d+)\}?/g, "$$$1")),
  loop: (args, line) => {
    const [a, b] = args.length === 1 ? [0, num(args[0], line)] : [num(args[0], line), num(args[1], line)];
    const out: number[] = [];
    if (a <= b) for (let i = a; i < b; i++) out.push(i);
    else for (let i = a; i > b; i--) out.push(i);
    return out;
  },
  eq: ([a, ...rest]) => rest.some((b) => print(a) === print(b)),
  ne: ([a, b]) => print(a) !== print(b),
  lt: ([a, b], l) => num(a, l) < num(b, l),
  le: ([a, b], l) => num(a, l) <= num(b, l),
  gt: ([a, b], l) => num(a, l) > num(b, l),
  ge: ([a, b], l) => num(a, l) >= num(b, l),
  not: ([a]) => !truthy(a),
  and: (args) => args.find((a) => !truthy(a)) ?? args[args.length - 1],
  or: (args) => args.find((a) => truthy(a)) ?? args[args.length - 1],
  len: ([a]) => (Array.isArray(a) ? a.length : str(a).length),
  index: ([a, i], l) => (Array.isArray(a) ? a[num(i, l)] : undefined),
  print: (args) => args.map(print).join(""),
  println: (args) => `${args.map(print).join(" ")}\n`,
  printf: ([f, ...args]) => printf(str(f), args),
};

/**
 * Hooks of the symbolic rendering `statepilot convert` uses: an action that only reads a variable
 * (`{{ .VAR }}`, `{{ .VAR | default "x" }}`, `{{ env "VAR" }}`) is given to `symbol` and its result
 * printed instead of the value; everything else is evaluated and reported through `evaluated`.
 */
export interface SymbolicHooks {
  symbol: (name: string, fallback: string | undefined) => string | undefined;
  evaluated: (source: string, line: number) => void;
}

interface Scope {
  env: NodeJS.ProcessEnv;
  dot: Value | "root";
  vars: Map<string, Value>;
  hooks: SymbolicHooks | undefined;
}

function evalOperand(o: Operand, s: Scope, line: number): Value {
  switch (o.kind) {
    case "field":
      if (s.dot !== "root") throw new TemplateError(line, `.${o.name} inside range or with: the environment is only at the top level`);
      return s.env[o.name] ?? "";
    case "dot":
      return s.dot === "root" ? "" : s.dot;
    case "var":
      if (!s.vars.has(o.name)) throw new TemplateError(line, `undefined variable ${o.name}`);
      return s.vars.get(o.name);
    case "lit":
      return o.value;
    case "paren":
      return evalPipe(o.pipe, s);
    case "ident":
      return callFn(o.name, [], s, line);
  }
}

function callFn(name: string, args: Value[], s: Scope, line: number): Value {
  const fn = FUNCS[name];
  if (!fn) throw new TemplateError(line, `function "${name}" not defined (ContainerPilot's are default, env, split, join, replaceAll, regexReplaceAll, loop)`);
  if (name === "env") return s.env[str(args[0])] ?? "";
  return fn(args, line);
}

function evalPipe(p: Pipe, s: Scope): Value {
  let piped: Value | null = null;
  for (const cmd of p.cmds) {
    const [head, ...rest] = cmd;
    const args = rest.map((o) => evalOperand(o, s, p.line));
    if (piped !== null) args.push(piped);
    if (head!.kind === "ident") piped = callFn(head!.name, args, s, p.line);
    else {
      if (args.length) throw new TemplateError(p.line, `can't give arguments to a non-function in {{ ${p.source} }}`);
      piped = evalOperand(head!, s, p.line);
    }
  }
  return piped ?? undefined;
}

/** `{{ .VAR }}`, `{{ .VAR | default "x" }}`, `{{ default "x" .VAR }}`, `{{ env "VAR" }}`: the variable and its fallback. */
function simpleRead(p: Pipe): { name: string; fallback: string | undefined } | undefined {
  if (p.decl.length) return undefined;
  const [first, second, ...more] = p.cmds;
  if (more.length || !first) return undefined;
  const lit = (o: Operand | undefined) => (o?.kind === "lit" && typeof o.value === "string" ? o.value : undefined);
  let name: string | undefined;
  let fallback: string | undefined;
  if (first.length === 1 && first[0]!.kind === "field") name = first[0]!.name;
  else if (first.length === 2 && first[0]!.kind === "ident" && first[0]!.name === "env") name = lit(first[1]);
  else if (!second && first.length === 3 && first[0]!.kind === "ident" && first[0]!.name === "default" && first[2]!.kind === "field") {
    name = first[2]!.name;
    fallback = lit(first[1]);
    if (fallback === undefined) return undefined;
  }
  if (name === undefined) return undefined;
  if (second) {
    if (second.length !== 2 || second[0]!.kind !== "ident" || second[0]!.name !== "default") return undefined;
    fallback = lit(second[1]);
    if (fallback === undefined) return undefined;
  }
  return { name, fallback };
}

function render(nodes: Node[], s: Scope): string {
  let out = "";
  for (const n of nodes) {
    switch (n.kind) {
      case "text":
        out += n.text;
        break;
      case "action": {
        const read = s.dot === "root" && s.hooks ? simpleRead(n.pipe) : undefined;
        const sym = read && s.hooks?.symbol(read.name, read.fallback);
        if (sym !== undefined && sym !== "") {
          out += sym;
          break;
        }
        if (s.hooks && !n.pipe.decl.length) s.hooks.evaluated(n.pipe.source, n.line);
        const v = evalPipe(n.pipe, s);
        if (n.pipe.decl.length) for (const d of n.pipe.decl) s.vars.set(d, v);
        else out += print(v);
        break;
      }
      case "if": {
        const hit = n.branches.find((b) => {
          s.hooks?.evaluated(`if ${b.pipe.source}`, b.pipe.line);
          return truthy(evalPipe(b.pipe, s));
        });
        out += render(hit ? hit.body : n.otherwise, s);
        break;
      }
      case "with": {
        s.hooks?.evaluated(`with ${n.pipe.source}`, n.pipe.line);
        const v = evalPipe(n.pipe, s);
        out += truthy(v) ? render(n.body, { ...s, dot: v }) : render(n.otherwise, s);
        break;
      }
      case "range": {
        s.hooks?.evaluated(`range ${n.pipe.source}`, n.pipe.line);
        const v = evalPipe(n.pipe, s);
        const items = Array.isArray(v) ? v : truthy(v) ? [v] : [];
        if (!items.length) out += render(n.otherwise, s);
        items.forEach((item, i) => {
          const vars = new Map(s.vars);
          if (n.vars.length === 1) vars.set(n.vars[0]!, item);
          if (n.vars.length === 2) {
            vars.set(n.vars[0]!, i);
            vars.set(n.vars[1]!, item);
          }
          out += render(n.body, { ...s, dot: item, vars });
        });
        break;
      }
    }
  }
  return out;
}

/** Renders a ContainerPilot config template with the environment as its data. */
export function renderTemplate(text: string, env: NodeJS.ProcessEnv, hooks?: SymbolicHooks): string {
  return render(parse(tokenize(text)), { env, dot: "root", vars: new Map(), hooks });
}
