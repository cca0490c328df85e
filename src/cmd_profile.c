/*
 * cmd_profile.c — `wim profile`: memory against context length L and chunk
 * size K, for tiled (online-softmax) and materialised attention; a table,
 * JSON Lines, and an SVG plot a reader understands without the table.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "outfile.h"
#include "profile.h"
#include "wim.h"

#define MAX_VALUES 16

static const char *const usage =
    "usage: wim profile -m MODEL [-L 1024,4096,16384] [-K 128,512,4096] [--mode "
    "both|tiled|materialized]\n"
    "                   [--svg FILE] [--json] [-t THREADS]\n"
    "  For each context length L and chunk size K, prefills L tokens in chunks of K into a\n"
    "  fresh KV cache of L cells and reports the peak of accounted scratch memory, the KV\n"
    "  cache bytes, the process's peak RSS and the time, with tiled attention (online\n"
    "  softmax: scratch independent of L) and with the materialised K x L score matrix.\n"
    "  Rows with K > L are skipped. --json prints one object per row; --svg writes a plot.\n";

static double mib(size_t b) {
    return b / 1048576.0;
}

/* ---- SVG: log-log plot of scratch peak against L, one line per (K, mode) ---- */

static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                     "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

static int write_svg(const char *path, const wim_profile_row *rows, int n_rows, const int *Ks,
                     int nK, const char *model_name) {
    double xmin = 1e30, xmax = 0, ymin = 1e30, ymax = 0;
    for (int i = 0; i < n_rows; i++) {
        if (!rows[i].ok) continue;
        double y0 = (double)rows[i].scratch_peak_bytes, y1 = (double)rows[i].kv_bytes;
        xmin = fmin(xmin, rows[i].L);
        xmax = fmax(xmax, rows[i].L);
        ymin = fmin(ymin, fmin(y0, y1));
        ymax = fmax(ymax, fmax(y0, y1));
    }
    if (xmax == 0) return cli_error("profile: no successful rows to plot");
    double lx0 = log2(xmin) - 0.25, lx1 = log2(xmax) + 0.25;
    double ly0 = floor(log10(ymin)), ly1 = ceil(log10(ymax));
    if (ly1 <= ly0) ly1 = ly0 + 1;
    const double W = 860, H = 520, left = 90, right = 250, top = 60, bottom = 70;
    const double pw = W - left - right, ph = H - top - bottom;
#define PX(L) (left + (log2(L) - lx0) / (lx1 - lx0) * pw)
#define PY(b) (top + ph - (log10(b) - ly0) / (ly1 - ly0) * ph)
    char err[512];
    wim_outfile o;
    if (outfile_open(&o, path, err, sizeof err)) return cli_error("%s", err);
    FILE *f = o.f;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "font-family=\"sans-serif\" font-size=\"13\">\n",
            W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
    fprintf(f,
            "<text x=\"%.0f\" y=\"28\" font-size=\"17\" font-weight=\"bold\">Prefill working "
            "memory vs context length (%s)</text>\n",
            left, model_name);
    fprintf(f,
            "<text x=\"%.0f\" y=\"47\" fill=\"#555\">Materialised attention needs a K x L score "
            "matrix; tiled online softmax needs scratch independent of L. Log-log axes.</text>\n",
            left);
    for (double e = ly0; e <= ly1 + 1e-9; e++) { /* horizontal grid: bytes */
        double y = PY(pow(10, e));
        const char *unit[] = {"B",     "10 B",   "100 B", "1 KB",  "10 KB",  "100 KB", "1 MB",
                              "10 MB", "100 MB", "1 GB",  "10 GB", "100 GB", "1 TB"};
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
                left, y, left + pw, y);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", left - 8, y + 4,
                e >= 0 && e <= 12 ? unit[(int)e] : "?");
    }
    for (int i = 0; i < n_rows; i++) { /* vertical ticks at each L measured */
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= rows[j].L == rows[i].L;
        if (seen || !rows[i].ok) continue;
        double x = PX(rows[i].L);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>\n", x,
                top, x, top + ph);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%d</text>\n", x,
                top + ph + 18, rows[i].L);
    }
    fprintf(f,
            "<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" fill=\"none\" "
            "stroke=\"#333\"/>\n",
            left, top, pw, ph);
    fprintf(f,
            "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">context length L (tokens)</text>\n",
            left + pw / 2, H - 22);
    fprintf(f,
            "<text transform=\"translate(22,%.0f) rotate(-90)\" text-anchor=\"middle\">peak "
            "bytes</text>\n",
            top + ph / 2);
    int legend = 0;
    for (int mode = 1; mode >= 0; mode--)
        for (int k = 0; k < nK; k++) {
            const char *color = colors[k % 8];
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\"%s points=\"",
                    color, mode ? "" : " stroke-dasharray=\"7,5\"");
            int pts = 0;
            for (int i = 0; i < n_rows; i++)
                if (rows[i].ok && rows[i].K == Ks[k] && rows[i].materialize == mode) {
                    fprintf(f, "%.1f,%.1f ", PX(rows[i].L), PY((double)rows[i].scratch_peak_bytes));
                    pts++;
                }
            fprintf(f, "\"/>\n");
            for (int i = 0; i < n_rows; i++)
                if (rows[i].ok && rows[i].K == Ks[k] && rows[i].materialize == mode)
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n",
                            PX(rows[i].L), PY((double)rows[i].scratch_peak_bytes), color);
            if (!pts) continue;
            double ly = top + 10 + 22 * legend++;
            fprintf(f,
                    "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"%s\" "
                    "stroke-width=\"2.5\"%s/>\n",
                    left + pw + 15, ly, left + pw + 45, ly, color,
                    mode ? "" : " stroke-dasharray=\"7,5\"");
            fprintf(f, "<text x=\"%.0f\" y=\"%.1f\">scratch, K=%d, %s</text>\n", left + pw + 52,
                    ly + 4, Ks[k], mode ? "materialised" : "tiled");
        }
    /* the KV cache itself grows with L in both modes: one grey line */
    fprintf(f,
            "<polyline fill=\"none\" stroke=\"#888\" stroke-width=\"1.5\" stroke-dasharray=\"2,3\" "
            "points=\"");
    for (int i = 0; i < n_rows; i++)
        if (rows[i].ok && rows[i].K == Ks[0] && rows[i].materialize == rows[0].materialize)
            fprintf(f, "%.1f,%.1f ", PX(rows[i].L), PY((double)rows[i].kv_bytes));
    fprintf(f, "\"/>\n");
    double ly = top + 10 + 22 * legend;
    fprintf(f,
            "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#888\" "
            "stroke-width=\"1.5\" stroke-dasharray=\"2,3\"/>\n",
            left + pw + 15, ly, left + pw + 45, ly);
    fprintf(f, "<text x=\"%.0f\" y=\"%.1f\">KV cache (both modes)</text>\n", left + pw + 52,
            ly + 4);
    fprintf(f, "</svg>\n");
#undef PX
#undef PY
    if (outfile_commit(&o, err, sizeof err)) return cli_error("%s", err);
    return 0;
}

int cmd_profile(int argc, char **argv) {
    if (cli_wants_help(argc, argv, usage)) return 0;
    cli_measure_opts mo = {0};
    const char *svg = NULL, *mode = "both";
    int Ls[MAX_VALUES] = {1024, 4096, 16384}, Ks[MAX_VALUES] = {128, 512, 4096};
    int nL = 3, nK = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int known = cli_measure_option("profile", argc, argv, &i, &mo, &v);
        if (known) {
            if (known < 0) return 2;
        } else if (!strcmp(a, "--svg"))
            svg = v;
        else if (!strcmp(a, "--mode"))
            mode = v;
        else if (!strcmp(a, "-L")) {
            if ((nL = cli_int_list(a, v, 1, 1 << 22, Ls, MAX_VALUES)) < 0) return 2;
        } else if (!strcmp(a, "-K")) {
            if ((nK = cli_int_list(a, v, 1, 1 << 22, Ks, MAX_VALUES)) < 0) return 2;
        } else
            return cli_error("profile: unknown option '%s' (see wim profile --help)", a);
    }
    if (!mo.model) return cli_error("profile: no model given: pass -m MODEL.gguf");
    int modes[2], n_modes = 0;
    if (!strcmp(mode, "both") || !strcmp(mode, "tiled")) modes[n_modes++] = 0;
    if (!strcmp(mode, "both") || !strcmp(mode, "materialized")) modes[n_modes++] = 1;
    if (!n_modes) return cli_error("profile: --mode must be both, tiled or materialized");
    int pairs = 0;
    for (int a = 0; a < nL; a++)
        for (int b = 0; b < nK; b++)
            pairs += Ks[b] <= Ls[a];
    if (!pairs) return cli_error("profile: nothing to measure: every chunk size K exceeds every L");
    char err[512];
    wim_model *m;
    /* no OpenMP region may run in this process before the measurements fork */
    if (wim_model_load(mo.model, &m, err, sizeof err)) return cli_error("%s", err);
    wim_profile_row *rows = calloc((size_t)nL * nK * 2, sizeof *rows);
    if (!rows) return cli_error("out of memory");
    int n = 0, failed = 0;
    if (!mo.json)
        printf("%8s %6s %-13s %14s %12s %12s %10s\n", "L", "K", "attention", "scratch peak",
               "KV cache", "peak RSS", "time");
    /* one thread count for every row: the scratch a row reports depends on it, and the
     * engine's default follows the machine's load, which would differ from row to row */
    if (mo.threads <= 0)
        mo.threads = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    for (int a = 0; a < nL; a++)
        for (int b = 0; b < nK; b++)
            for (int md = 0; md < n_modes; md++) {
                if (Ks[b] > Ls[a]) continue;
                wim_profile_row *r = &rows[n++];
                if (wim_profile_one(m, Ls[a], Ks[b], modes[md], (int)mo.threads, r)) {
                    fprintf(stderr, "wim: profile L=%d K=%d %s: %s\n", Ls[a], Ks[b],
                            modes[md] ? "materialized" : "tiled", r->err);
                    failed = 1;
                    continue;
                }
                if (mo.json)
                    printf("{\"L\":%d,\"K\":%d,\"mode\":\"%s\",\"scratch_peak_bytes\":%zu,"
                           "\"kv_bytes\":%zu,\"rss_peak_bytes\":%zu,\"ms\":%.1f}\n",
                           r->L, r->K, r->materialize ? "materialized" : "tiled",
                           r->scratch_peak_bytes, r->kv_bytes, r->rss_peak_bytes, r->ms);
                else
                    printf("%8d %6d %-13s %10.2f MiB %8.2f MiB %8.1f MiB %7.0f ms\n", r->L, r->K,
                           r->materialize ? "materialized" : "tiled", mib(r->scratch_peak_bytes),
                           mib(r->kv_bytes), mib(r->rss_peak_bytes), r->ms);
                fflush(stdout);
            }
    const char *slash = strrchr(mo.model, '/');
    int rc = failed ? 1 : 0;
    if (svg && write_svg(svg, rows, n, Ks, nK, slash ? slash + 1 : mo.model)) rc = 2;
    free(rows);
    wim_model_free(m);
    return rc;
}
