import { ELEMENT, type Notes, type Tree } from "./notes.js";

/** A converted config as JSON5 text, each note a `//` comment above the key it is about. */
export function toJson5(tree: Tree, notes: Notes, header: string[], finish: (s: string) => string, display: (s: string) => string = (s) => s): string {
  const lines = header.map((h) => `// ${h}`);
  const key = (k: string) => (/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k));
  const scalar = (v: unknown): string => (typeof v === "string" ? JSON.stringify(finish(v)) : JSON.stringify(v) ?? "null");
  const isScalar = (v: unknown) => v === null || typeof v !== "object";
  const comment = (pad: string, texts: string[]) => texts.map((t) => `${pad}// ${display(t)}`).join("\n");

  const value = (v: unknown, pad: string, element = false): string => {
    if (isScalar(v)) return scalar(v);
    const inner = `${pad}  `;
    if (Array.isArray(v)) {
      if (v.every(isScalar)) {
        const flat = `[${v.map(scalar).join(", ")}]`;
        if (flat.length + pad.length < 100) return flat;
      }
      const items = v.map((x) => {
        const c = x && typeof x === "object" ? notes.of(x, ELEMENT) : [];
        return `${c.length ? `${comment(inner, c)}\n` : ""}${inner}${value(x, inner, true)},`;
      });
      return `[\n${items.join("\n")}\n${pad}]`;
    }
    const o = v as Tree;
    const entries = Object.entries(o).filter(([, x]) => x !== undefined);
    const own = element ? [] : notes.of(o, ELEMENT);
    if (!entries.length && !own.length) return "{}";
    const body = own.map((t) => `${inner}// ${display(t)}`).concat(entries.map(([k, x]) => {
      const c = notes.of(o, k);
      return `${c.length ? `${comment(inner, c)}\n` : ""}${inner}${key(k)}: ${value(x, inner)},`;
    }));
    return `{\n${body.join("\n")}\n${pad}}`;
  };
  lines.push(value(tree, ""));
  return `${lines.join("\n")}\n`;
}
