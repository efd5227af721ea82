/**
 * What a conversion says about each translated key: comments attached to the converted objects
 * (by object and key, so moving a job keeps its comments), printed by `statepilot convert`.
 */
export type Tree = Record<string, unknown>;
export type Path = Array<string | number>;

/** The key an array element's own comment is filed under. */
export const ELEMENT = "";

export class Notes {
  private readonly byObject = new WeakMap<object, Map<string, string[]>>();

  add(target: object, key: string, text: string): void {
    let m = this.byObject.get(target);
    if (!m) {
      m = new Map();
      this.byObject.set(target, m);
    }
    m.set(key, [...(m.get(key) ?? []), text]);
  }

  of(target: object, key: string): string[] {
    return this.byObject.get(target)?.get(key) ?? [];
  }

  /** Every note with the path of its key in the tree (`jobs[1].service`), in tree order. */
  list(tree: Tree): Array<{ path: Path; text: string }> {
    const out: Array<{ path: Path; text: string }> = [];
    const walk = (v: unknown, path: Path) => {
      if (v === null || typeof v !== "object") return;
      if (Array.isArray(v)) {
        v.forEach((x, i) => {
          if (x && typeof x === "object") for (const text of this.of(x, ELEMENT)) out.push({ path: [...path, i], text });
          walk(x, [...path, i]);
        });
        return;
      }
      for (const [k, x] of Object.entries(v)) {
        for (const text of this.of(v, k)) out.push({ path: [...path, k], text });
        walk(x, [...path, k]);
      }
    };
    walk(tree, []);
    return out;
  }
}

/**
 * `statepilot convert` keeps `{{ .VAR }}` as `${VAR}`: a variable read becomes a private-use
 * placeholder while the file is parsed and converted, expanded when it is printed.
 */
export class Symbols {
  private readonly entries: Array<{ name: string; fallback: string | undefined }> = [];
  private readonly ids = new Map<string, number>();

  variable(name: string, fallback?: string): string {
    const key = `${name}\u0000${fallback ?? "\u0001"}`;
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.entries.push({ name, fallback }) - 1;
      this.ids.set(key, id);
    }
    return `\uE000${id}\uE001`;
  }

  static has(text: string): boolean {
    return /\uE000\d+\uE001/.test(text);
  }

  /** The text with each placeholder's value in this environment (`:-` semantics). */
  resolve(text: string, env: NodeJS.ProcessEnv): string {
    return text.replace(/\uE000(\d+)\uE001/g, (_, id: string) => {
      const e = this.entries[Number(id)]!;
      return env[e.name] || (e.fallback === undefined ? "" : this.resolve(e.fallback, env));
    });
  }

  /** A comment's text: placeholders shown as `${VAR}`, nothing escaped. */
  display(text: string): string {
    return text.replace(/\uE000(\d+)\uE001/g, (_, id: string) => {
      const e = this.entries[Number(id)]!;
      return e.fallback === undefined ? `\${${e.name}}` : `\${${e.name}:-${this.display(e.fallback)}}`;
    });
  }

  /** The native text of a string value: a literal `$` before `{` or `$` doubled, placeholders as `${VAR}` / `${VAR:-fallback}`. */
  finish(text: string): string {
    return text
      .replace(/\$(?=[{$])/g, () => "$$")
      .replace(/\uE000(\d+)\uE001/g, (_, id: string) => {
        const e = this.entries[Number(id)]!;
        return e.fallback === undefined ? `\${${e.name}}` : `\${${e.name}:-${this.finish(e.fallback)}}`;
      });
  }
}
