import { describe, expect, it } from "vitest";
import { GtidParseError, gtidBehind, gtidCount, gtidSubset, gtidUnion, gtidUnionForCompare, mariaStateContained, ownTailBeyond, withoutOwnWrites, parseMysqlGtidSet, formatMysqlGtidSet } from "../../src/mysql/gtid.js";

const U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const U2 = "4a2b9c10-1111-11e1-9e33-c80aa9429562";

describe("MariaDB GTID positions", () => {
  it("compare per domain by sequence, not as strings", () => {
    expect(gtidSubset("mariadb", "0-1-9", "0-1-10")).toBe(true);
    expect(gtidSubset("mariadb", "0-1-10", "0-1-9")).toBe(false); // "0-1-10" < "0-1-9" as strings
    expect(gtidSubset("mariadb", "0-1-5,1-2-7", "1-2-7,0-3-6")).toBe(true);
    expect(gtidSubset("mariadb", "0-1-5,2-2-1", "0-1-5")).toBe(false);
    expect(gtidSubset("mariadb", "", "0-1-5")).toBe(true);
    expect(gtidBehind("mariadb", "0-1-5", "0-2-6")).toBe(true);
    // The same sequence number written by two servers is two transactions (simulation seed 41087:
    // a restored node holding an errant 0-2-36 looked as advanced as a replica that received 0-1-36).
    expect(gtidBehind("mariadb", "0-1-6", "0-2-6")).toBe(true);
    expect(gtidSubset("mariadb", "0-2-6", "0-2-6")).toBe(true);
    expect(gtidSubset("mariadb", "0-2-6", "0-1-6,0-2-6")).toBe(true);
    expect(gtidSubset("mariadb", "0-1-6,0-2-6", "0-2-6")).toBe(false);
    expect(gtidSubset("mariadb", "0-1-6", "0-2-7")).toBe(true); // a later seq: the history goes on
  });

  it("a replica's own writes drop out of what it holds, leaving a seq-only bound", () => {
    expect(withoutOwnWrites("0-3-18,1-1-4", 3)).toBe("0-0-17,1-1-4");
    expect(withoutOwnWrites("0-3-1", 3)).toBe("");
    expect(gtidSubset("mariadb", "0-0-17", "0-1-17")).toBe(true);
    expect(gtidSubset("mariadb", "0-0-17", "0-1-16")).toBe(false);
  });

  it("a union for comparing keeps both tails at a conflicting sequence number", () => {
    expect(gtidUnionForCompare("mariadb", "0-2-36", "0-1-36")).toBe("0-1-36,0-2-36");
    expect(gtidUnionForCompare("mariadb", "0-2-36,1-1-3", "0-1-40")).toBe("0-1-40,1-1-3");
    expect(gtidBehind("mariadb", "0-2-36", gtidUnionForCompare("mariadb", "0-2-36", "0-1-36"))).toBe(true);
  });

  it("tell a diverged tail from a position that is merely behind, using binlog states", () => {
    // The old primary (server 1) wrote 0-1-11 that nobody got; the new primary (2) went on from 10.
    expect(mariaStateContained("0-1-11", "0-1-10,0-2-12")).toEqual({ contained: false, missing: ["0-1-11"] });
    expect(mariaStateContained("0-1-10", "0-1-10,0-2-12")).toEqual({ contained: true, missing: [] });
    // Errant local write on a replica (server 3).
    expect(mariaStateContained("0-1-10,0-3-11", "0-1-10,0-2-12").missing).toEqual(["0-3-11"]);
  });

  it("union keeps the highest GTID per domain", () => {
    expect(gtidUnion("mariadb", "0-1-5,1-1-2", "0-2-7")).toBe("0-2-7,1-1-2");
    expect(gtidCount("mariadb", "0-1-5,1-1-2")).toBe(7n);
  });

  it("reject text that is not a position", () => {
    expect(() => gtidSubset("mariadb", "0-1", "0-1-2")).toThrow(GtidParseError);
  });
});

describe("MySQL GTID sets", () => {
  it("parse, merge and format intervals", () => {
    const s = parseMysqlGtidSet(`${U1}:1-5:6-9:12,\n${U2}:3`);
    expect(formatMysqlGtidSet(s)).toBe(`${U1}:1-9:12,${U2}:3`);
  });

  it("compare by interval containment", () => {
    expect(gtidSubset("mysql", `${U1}:1-5`, `${U1}:1-9`)).toBe(true);
    expect(gtidSubset("mysql", `${U1}:1-5:7`, `${U1}:1-6`)).toBe(false);
    expect(gtidSubset("mysql", `${U1}:1-5,${U2}:1`, `${U1}:1-9`)).toBe(false);
    expect(gtidBehind("mysql", `${U1}:1-5`, `${U1}:1-6`)).toBe(true);
    expect(gtidCount("mysql", `${U1}:1-5:7,${U2}:1-2`)).toBe(8n);
    expect(gtidUnion("mysql", `${U1}:1-5`, `${U1}:6-8,${U2}:1`)).toBe(`${U1}:1-8,${U2}:1`);
  });

  it("understand tagged GTIDs (8.3+)", () => {
    expect(gtidSubset("mysql", `${U1}:tag_a:1-3`, `${U1}:1-9:tag_a:1-5`)).toBe(true);
    expect(gtidSubset("mysql", `${U1}:tag_a:1-3`, `${U1}:1-9`)).toBe(false);
  });

  it("reject malformed sets", () => {
    expect(() => parseMysqlGtidSet("nope:1-2")).toThrow(GtidParseError);
    expect(() => parseMysqlGtidSet(`${U1}:5-3`)).toThrow(/ends before it starts/);
  });
});

describe("ownTailBeyond", () => {
  it("names a server's transactions at seqs the base never reached in their domain", () => {
    expect(ownTailBeyond("mariadb", "0-1-201", "0-1-200", 1)).toEqual(["0-1-201"]);
    expect(ownTailBeyond("mariadb", "0-1-201,1-1-5", "0-1-200,1-2-9", 1)).toEqual(["0-1-201"]);
    // Another server's, or a seq the base has (by any server): not this server's lost tail.
    expect(ownTailBeyond("mariadb", "0-2-201", "0-1-200", 1)).toEqual([]);
    expect(ownTailBeyond("mariadb", "0-1-201", "0-2-201", 1)).toEqual([]);
    expect(ownTailBeyond("mysql", "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5", "", 1)).toEqual([]);
  });
});
