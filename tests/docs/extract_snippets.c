/* tests/docs/extract_snippets.c - pulls the C snippets out of a Markdown
 * page, so that the page's code is compiled and run as written.
 *
 *     extract_snippets PAGE.md OUT_DIR NAME...
 *
 * Every fenced block that follows a line `<!-- snippet: NAME -->` (blank
 * lines between are allowed) is appended, in page order, to OUT_DIR/NAME.EXT,
 * EXT from the fence's language: ```c (.c, after a #line directive pointing
 * at the page, so compiler messages name the page's lines), ```cpp (.cpp,
 * with the same #line), ```python (.py),
 * ```rust (.rs), ```go (.go), ```sh (.sh), ```console (.console: "$ "
 * command lines, each followed by its expected output) and ```json (.json).
 * All blocks of one NAME have one language. The NAMEs are the snippets the
 * tests use: a page that
 * marks another name, or lacks one of them, is an error, so a snippet can
 * never silently drop out of the test. A file is rewritten only when its
 * text changes (no needless rebuilds). Exit status 0, or 1 with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NAMES 16

/* fence language -> file extension */
static const char *const langs[][2] = {
    {"c", "c"},   {"cpp", "cpp"},          {"python", "py"}, {"rust", "rs"}, {"go", "go"},
    {"sh", "sh"}, {"console", "console"}, {"json", "json"},
};
#define N_LANGS (sizeof langs / sizeof langs[0])

typedef struct text {
    char *s;
    size_t n, cap;
} text;

static int put(text *t, const char *s, size_t n) {
    if (t->n + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 4096;
        while (cap < t->n + n + 1) cap *= 2;
        char *p = realloc(t->s, cap);
        if (!p) return -1;
        t->s = p;
        t->cap = cap;
    }
    memcpy(t->s + t->n, s, n);
    t->n += n;
    t->s[t->n] = 0;
    return 0;
}

static int blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r') return 0;
    return 1;
}

/* The extension of a fence line "```LANG", or NULL when it is not one. */
static const char *fence_ext(const char *line) {
    if (strncmp(line, "```", 3) != 0) return NULL;
    for (size_t i = 0; i < N_LANGS; i++) {
        size_t n = strlen(langs[i][0]);
        if (strncmp(line + 3, langs[i][0], n) == 0 && blank(line + 3 + n)) return langs[i][1];
    }
    return NULL;
}

/* Writes body to path unless the file already holds exactly that. */
static int write_if_changed(const char *path, const text *body) {
    FILE *f = fopen(path, "rb");
    if (f) {
        char *old = malloc(body->n + 2);
        size_t got = old ? fread(old, 1, body->n + 1, f) : 0;
        fclose(f);
        int same = old && got == body->n && memcmp(old, body->s, body->n) == 0;
        free(old);
        if (same) return 0;
    }
    f = fopen(path, "wb");
    if (!f || fwrite(body->s, 1, body->n, f) != body->n || fclose(f) != 0) {
        fprintf(stderr, "extract_snippets: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc - 3 > MAX_NAMES) {
        fprintf(stderr, "usage: extract_snippets PAGE.md OUT_DIR NAME... (at most %d)\n", MAX_NAMES);
        return 1;
    }
    const char *page = argv[1], *out_dir = argv[2];
    const int n_names = argc - 3;
    text body[MAX_NAMES];
    const char *ext[MAX_NAMES] = {NULL};
    memset(body, 0, sizeof body);
    FILE *f = fopen(page, "r");
    if (!f) {
        fprintf(stderr, "extract_snippets: cannot read %s\n", page);
        return 1;
    }
    enum { TEXT, ARMED, CODE } state = TEXT;
    int cur = -1;
    long lineno = 0;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        lineno++;
        if (state == CODE) {
            if (strncmp(line, "```", 3) == 0 && blank(line + 3)) {
                state = TEXT;
            } else if (put(&body[cur], line, strlen(line))) {
                fprintf(stderr, "extract_snippets: out of memory\n");
                return 1;
            }
            continue;
        }
        char name[128];
        if (sscanf(line, "<!-- snippet: %127[A-Za-z0-9_] -->", name) == 1) {
            cur = -1;
            for (int i = 0; i < n_names; i++)
                if (strcmp(argv[3 + i], name) == 0) cur = i;
            if (cur < 0) {
                fprintf(stderr, "%s:%ld: snippet '%s' is not one the tests compile\n", page, lineno, name);
                return 1;
            }
            state = ARMED;
        } else if (state == ARMED) {
            const char *e = fence_ext(line);
            if (e) {
                if (ext[cur] && strcmp(ext[cur], e) != 0) {
                    fprintf(stderr, "%s:%ld: snippet '%s' mixes languages (%s and %s)\n", page,
                            lineno, argv[3 + cur], ext[cur], e);
                    return 1;
                }
                ext[cur] = e;
                if (strcmp(e, "c") == 0 || strcmp(e, "cpp") == 0) {
                    char dir[4200];
                    snprintf(dir, sizeof dir, "#line %ld \"%s\"\n", lineno + 1, page);
                    if (put(&body[cur], dir, strlen(dir))) return 1;
                }
                state = CODE;
            } else if (!blank(line)) {
                fprintf(stderr,
                        "%s:%ld: a snippet marker must be followed by a fenced block of c, cpp, "
                        "python, rust, go, sh, console or json\n",
                        page, lineno);
                return 1;
            }
        }
    }
    fclose(f);
    if (state == CODE) {
        fprintf(stderr, "%s: a snippet's code block is not closed\n", page);
        return 1;
    }
    int rc = 0;
    for (int i = 0; i < n_names; i++) {
        if (body[i].n == 0) {
            fprintf(stderr, "%s: no snippet named '%s'\n", page, argv[3 + i]);
            rc = 1;
            continue;
        }
        char path[4200];
        snprintf(path, sizeof path, "%s/%s.%s", out_dir, argv[3 + i], ext[i]);
        if (write_if_changed(path, &body[i])) rc = 1;
        free(body[i].s);
    }
    return rc;
}
