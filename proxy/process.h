/*
 * proxy/process.h — the process: loads the config, binds the listening
 * sockets (one SO_REUSEPORT socket per listener and worker, bound in the
 * main thread so that a port already in use is an error at start), runs
 * the workers, and owns signals: SIGTERM/SIGINT drain (stop accepting,
 * finish in-flight requests up to drain_timeout) then exit 0.
 */
#ifndef TG_PROXY_PROCESS_H
#define TG_PROXY_PROCESS_H

/* `tollgate -t`: validates the file; prints each error; returns 0 or 1.
 * dump (`-T`): then prints the effective config to stdout (JSON, indented:
 * defaults filled in, ${VAR}s expanded, secrets "<redacted>"). */
int tg_process_check(const char *path, int dump);

/* Runs until drained. watch: also reload when the file changes (inotify on
 * its directory, so atomic renames and symlink swaps are seen). Returns the
 * exit status. */
int tg_process_run(const char *path, int watch);

#endif
