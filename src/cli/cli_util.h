/* cli_util: helpers shared by the subcommands (error and usage messages,
 * option parsing, human-readable numbers, a progress line). CLI layer only:
 * these print. fk_cli_error and fk_cli_parse_int are declared in cli.h. */
#ifndef FK_CLI_UTIL_H
#define FK_CLI_UTIL_H

#include "cli/cli.h"

#include <stdio.h>

/* Print "fluxkit CMD: <msg> (see 'fluxkit CMD --help')" to stderr and return
 * FK_EXIT_USAGE, e.g. return fk_cli_usage(cmd, "missing --out"). */
int fk_cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Report a getopt_long failure (call when it returned '?' or ':'; set
 * opterr = 0 and start optstring with ':' so getopt stays quiet). Names the
 * offending option. Returns FK_EXIT_USAGE. */
int fk_cli_getopt_failure(const char *cmd, char **argv, int c);

/* Reset getopt for a fresh parse of a subcommand's argv. */
void fk_cli_getopt_reset(void);

/* Print a context error as "fluxkit: error: <msg>" and return FK_EXIT_ERROR. */
int fk_cli_fail(const fk_context *ctx);

/* Parse a 64-bit unsigned integer (decimal or 0x hex) for an option; on
 * failure prints a usage error naming the option and returns false. */
bool fk_cli_parse_u64(const char *opt, const char *s, uint64_t *out);

/* Human-readable numbers into buf (returns buf):
 *   bytes  : "6.37 GB", "512 kB", "84 B" (decimal units, 3 significant digits)
 *   count  : "3.18 B", "12.6 M", "4.10 K", "84" (billion, million, thousand)
 *   grouped: "3,183,233,152" */
const char *fk_cli_fmt_bytes(uint64_t bytes, char *buf, size_t n);
const char *fk_cli_fmt_count(int64_t count, char *buf, size_t n);
const char *fk_cli_fmt_grouped(int64_t v, char *buf, size_t n);

/* True when path exists (any kind of file). */
bool fk_cli_path_exists(const char *path);
/* True when path is a directory. */
bool fk_cli_is_dir(const char *path);

/* A one-line progress display on stderr, shown only when stderr is a
 * terminal; redrawn at most ~10 times a second. */
typedef struct fk_cli_progress {
    bool enabled;
    const char *label;
    uint64_t total;   /* units (bytes, steps) */
    double t_start, t_last;
} fk_cli_progress;
void fk_cli_progress_begin(fk_cli_progress *p, const char *label, uint64_t total);
void fk_cli_progress_update(fk_cli_progress *p, uint64_t done, const char *what);
void fk_cli_progress_end(fk_cli_progress *p);

/* A FLUX config as a JSON object with the BFL FluxParams field names
 * (hidden_size, num_heads, depth, depth_single_blocks, in_channels,
 * out_channels, context_in_dim, vec_in_dim, mlp_ratio, guidance_embed,
 * qkv_bias, axes_dim, theta), as in the fixtures' __metadata__ "config".
 * Caller frees with cJSON_Delete. NULL when out of memory. */
struct cJSON;
struct fk_flux_config;
struct cJSON *fk_cli_flux_config_json(const struct fk_flux_config *cfg);

#endif /* FK_CLI_UTIL_H */
