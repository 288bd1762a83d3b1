/* fluxkit: command-line entry point and subcommand dispatch. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

typedef struct fk_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} fk_command;

static const fk_command fk_commands[] = {
    {"generate", fk_cmd_generate, "text-to-image / image-to-image with a FLUX model (PNG with metadata)"},
    {"info", fk_cmd_info, "describe a checkpoint file or folder (tensors, what model it is)"},
    {"init-random", fk_cmd_init_random, "write a random-weight checkpoint of a preset"},
    {"eval", fk_cmd_eval, "run a component on inputs from a safetensors file"},
    {"bench", fk_cmd_bench, "benchmark a component (seconds, GFLOP/s, peak memory)"},
    {"tokenize", fk_cmd_tokenize, "prompts to CLIP or T5 token ids (JSON lines), as FLUX tokenizes"},
    {"compare", fk_cmd_compare, "relative L2 error between the tensors of two files"},
};

static void fk_usage(FILE *f) {
    fprintf(f, "fluxkit %s — FLUX.1 inference and training in C\n\n", fk_version());
    fprintf(f, "usage: fluxkit COMMAND [OPTIONS]   (fluxkit COMMAND --help for its options)\n\n");
    fprintf(f, "commands:\n");
    for (size_t i = 0; i < sizeof(fk_commands) / sizeof(fk_commands[0]); i++)
        fprintf(f, "  %-12s %s\n", fk_commands[i].name, fk_commands[i].summary);
    fprintf(f, "\n  --version    print the version\n  --help       this message\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fk_usage(stderr);
        return FK_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        fk_usage(stdout);
        return FK_EXIT_OK;
    }
    if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
        printf("fluxkit %s\n", fk_version());
        return FK_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(fk_commands) / sizeof(fk_commands[0]); i++)
        if (!strcmp(cmd, fk_commands[i].name)) return fk_commands[i].run(argc - 1, argv + 1);
    fk_cli_error("unknown command '%s' (fluxkit --help lists the commands)", cmd);
    return FK_EXIT_USAGE;
}
