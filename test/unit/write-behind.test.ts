import { describe, expect, it } from "vitest";
import { backgroundDirtyBytes } from "../../src/snapshot/write-behind.js";

/** A /proc and /sys made of the given files; anything else is unreadable. */
const files = (f: Record<string, string>) => (path: string) => f[path];
const MEMINFO = "MemTotal:       24000000 kB\nMemFree:        20000000 kB\nMemAvailable:   22000000 kB\n";
const GB22 = 22_000_000 * 1024;

describe("where the restore's write-behind starts (the kernel's background dirty threshold)", () => {
  it("is vm.dirty_background_ratio percent of MemAvailable", () => {
    expect(backgroundDirtyBytes(files({ "/proc/sys/vm/dirty_background_bytes": "0\n", "/proc/sys/vm/dirty_background_ratio": "10\n", "/proc/meminfo": MEMINFO }))).toBe(Math.floor(GB22 / 10));
  });

  it("is vm.dirty_background_bytes when that is set", () => {
    expect(backgroundDirtyBytes(files({ "/proc/sys/vm/dirty_background_bytes": "268435456\n", "/proc/sys/vm/dirty_background_ratio": "10\n", "/proc/meminfo": MEMINFO }))).toBe(268_435_456);
  });

  it("takes a lower memory limit of the process's cgroup (v2, and v1 under a namespace's root)", () => {
    const base = { "/proc/sys/vm/dirty_background_ratio": "10\n", "/proc/meminfo": MEMINFO };
    const v2 = files({ ...base, "/proc/self/cgroup": "0::/ct/mysql-1\n", "/sys/fs/cgroup/ct/mysql-1/memory.max": "2147483648\n" });
    expect(backgroundDirtyBytes(v2)).toBe(Math.floor(2_147_483_648 / 10));
    const unlimited = files({ ...base, "/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/memory.max": "max\n" });
    expect(backgroundDirtyBytes(unlimited)).toBe(Math.floor(GB22 / 10));
    // v1: the path in /proc/self/cgroup is the host's; inside the container the mount's root is its own.
    const v1 = files({ ...base, "/proc/self/cgroup": "12:pids:/docker/abc\n4:memory:/docker/abc\n0::/\n", "/sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824\n" });
    expect(backgroundDirtyBytes(v1)).toBe(Math.floor(1_073_741_824 / 10));
  });

  it("is unknown when the kernel's settings cannot be read", () => {
    expect(backgroundDirtyBytes(files({}))).toBeUndefined();
    expect(backgroundDirtyBytes(files({ "/proc/sys/vm/dirty_background_ratio": "10\n", "/proc/meminfo": "MemTotal: 1 kB\n" }))).toBeUndefined();
  });
});
