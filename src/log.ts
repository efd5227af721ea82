import pino, { type Logger } from "pino";
import pretty from "pino-pretty";

export type { Logger };

export interface LogSettings {
  level: string;
  format: "auto" | "json" | "pretty";
}

/** Fields that may carry secrets anywhere in a log record. */
const REDACT = ["password", "token", "secret", "*.password", "*.token", "*.secret", "*.*.password", "*.*.token", "env", "*.env"];

/** pino JSON to stdout (pretty on a terminal when format is auto), secrets redacted. */
export function createLogger(settings: LogSettings, destination: NodeJS.WritableStream = process.stdout): Logger {
  const usePretty = settings.format === "pretty" || (settings.format === "auto" && (destination as NodeJS.WriteStream).isTTY === true);
  const options = { level: settings.level, base: { pid: process.pid }, redact: { paths: REDACT, censor: "********" } };
  if (usePretty) return pino(options, pretty({ destination: destination as NodeJS.WritableStream & { fd?: number }, sync: true, colorize: true, translateTime: "SYS:yyyy-mm-dd'T'HH:MM:ss.l", ignore: "pid,hostname", singleLine: true }));
  return pino(options, destination as pino.DestinationStream);
}
