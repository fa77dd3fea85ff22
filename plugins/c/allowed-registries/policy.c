/*
 * wkube admission policy: containers may only use images from the registries listed in the
 * settings.
 *
 *   settings:
 *     registries: [registry.example.com, wkube.local]
 *
 * A WASI preview 1 command: reads one JSON request on stdin, writes one JSON response on
 * stdout (schema: wit/admission/README.md). The registry of an image is the part before its
 * first '/' when that part looks like a host (has a '.' or ':' or is "localhost"); otherwise
 * the image is on Docker Hub, "docker.io". Pods and the pod templates of workloads are checked.
 *
 * Build: clang --target=wasm32-wasi -O2 -o allowed-registries.wasm policy.c
 *
 * The JSON reader below only walks the document (find a key in an object, step through an
 * array, read a string); it never builds a tree, so it needs no allocator beyond the input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_INPUT (4 * 1024 * 1024)
#define MAX_REGISTRIES 64
#define MAX_STR 512

/* ---- a minimal JSON walker: every function takes a pointer at a value and returns a pointer
 * just past what it consumed, or NULL on malformed input. ---- */

static const char *ws(const char *p) {
    while (p && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* Reads a string into out (truncated to cap-1, escapes other than \" and \\ kept verbatim). */
static const char *read_string(const char *p, char *out, size_t cap) {
    size_t n = 0;
    if (!p || *p != '"') return NULL;
    p++;
    while (*p && *p != '"') {
        char c = *p++;
        if (c == '\\') {
            if (!*p) return NULL;
            c = *p++;
            if (c == 'u') { /* keep \uXXXX as is: registries are ASCII */
                if (out && n + 1 < cap) out[n++] = '?';
                for (int i = 0; i < 4; i++) if (!*p++) return NULL;
                continue;
            }
            if (c == 'n') c = '\n'; else if (c == 't') c = '\t';
        }
        if (out && n + 1 < cap) out[n++] = c;
    }
    if (*p != '"') return NULL;
    if (out) out[n] = 0;
    return p + 1;
}

static const char *skip_value(const char *p);

static const char *skip_container(const char *p, char open, char close) {
    p = ws(p + 1);
    if (*p == close) return p + 1;
    for (;;) {
        if (open == '{') {
            p = ws(read_string(ws(p), NULL, 0));
            if (!p || *p != ':') return NULL;
            p++;
        }
        p = ws(skip_value(ws(p)));
        if (!p) return NULL;
        if (*p == ',') { p++; continue; }
        if (*p == close) return p + 1;
        return NULL;
    }
}

static const char *skip_value(const char *p) {
    p = ws(p);
    if (!p || !*p) return NULL;
    switch (*p) {
    case '"': return read_string(p, NULL, 0);
    case '{': return skip_container(p, '{', '}');
    case '[': return skip_container(p, '[', ']');
    default:
        while (*p && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n') p++;
        return p;
    }
}

/* The value of `key` in the object at p, or NULL. */
static const char *get(const char *p, const char *key) {
    char name[MAX_STR];
    p = ws(p);
    if (!p || *p != '{') return NULL;
    p = ws(p + 1);
    if (*p == '}') return NULL;
    for (;;) {
        p = ws(read_string(ws(p), name, sizeof name));
        if (!p || *p != ':') return NULL;
        p = ws(p + 1);
        if (strcmp(name, key) == 0) return p;
        p = ws(skip_value(p));
        if (!p || *p != ',') return NULL;
        p++;
    }
}

/* Follows a path of keys, e.g. {"spec", "template", "spec", NULL}. */
static const char *get_path(const char *p, const char *const *keys) {
    for (; p && *keys; keys++) p = get(p, *keys);
    return p;
}

/* Steps to the first element of the array at p (NULL if empty or not an array)... */
static const char *first(const char *p) {
    p = ws(p);
    if (!p || *p != '[') return NULL;
    p = ws(p + 1);
    return *p == ']' ? NULL : p;
}

/* ...and from one element to the next. */
static const char *next(const char *p) {
    p = ws(skip_value(p));
    if (!p || *p != ',') return NULL;
    return ws(p + 1);
}

/* ---- the policy ---- */

static char registries[MAX_REGISTRIES][MAX_STR];
static int n_registries;

static void json_escaped(const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        if ((unsigned char)*s < 0x20) { putchar(' '); continue; }
        putchar(*s);
    }
}

/* Reads settings.registries; returns an error message or NULL. */
static const char *load_settings(const char *settings) {
    const char *list = settings ? get(settings, "registries") : NULL;
    if (!list || *ws(list) != '[') return "settings.registries must be a list of registry hosts";
    for (const char *e = first(list); e; e = next(e)) {
        if (n_registries == MAX_REGISTRIES) return "settings.registries lists too many registries";
        if (*e != '"' || !read_string(e, registries[n_registries], MAX_STR))
            return "settings.registries must hold only strings";
        if (!registries[n_registries][0]) return "settings.registries holds an empty name";
        n_registries++;
    }
    if (n_registries == 0) return "settings.registries must name at least one registry";
    return NULL;
}

static void registry_of(const char *image, char *out, size_t cap) {
    const char *slash = strchr(image, '/');
    size_t len = slash ? (size_t)(slash - image) : 0;
    int host = 0;
    for (size_t i = 0; i < len; i++) if (image[i] == '.' || image[i] == ':') host = 1;
    if (len == 9 && strncmp(image, "localhost", 9) == 0) host = 1;
    if (!host) { snprintf(out, cap, "docker.io"); return; }
    snprintf(out, cap, "%.*s", (int)len, image);
}

static int allowed(const char *registry) {
    for (int i = 0; i < n_registries; i++)
        if (strcmp(registries[i], registry) == 0) return 1;
    return 0;
}

/* Where the pod spec sits, by kind. */
static const char *pod_spec(const char *object) {
    static const char *const pod[] = {"spec", NULL};
    static const char *const tmpl[] = {"spec", "template", "spec", NULL};
    static const char *const cron[] = {"spec", "jobTemplate", "spec", "template", "spec", NULL};
    char kind[MAX_STR] = "";
    const char *k = get(object, "kind");
    if (k) read_string(k, kind, sizeof kind);
    if (strcmp(kind, "Pod") == 0) return get_path(object, pod);
    if (strcmp(kind, "CronJob") == 0) return get_path(object, cron);
    return get_path(object, tmpl);
}

/* Prints the denial for the first image from a registry not allowed; returns 1 if denied. */
static int check_images(const char *spec) {
    static const char *const lists[] = {"initContainers", "containers", "ephemeralContainers"};
    char image[MAX_STR], registry[MAX_STR];
    for (size_t l = 0; l < sizeof lists / sizeof *lists; l++) {
        const char *list = get(spec, lists[l]);
        for (const char *c = list ? first(list) : NULL; c; c = next(c)) {
            const char *img = get(c, "image");
            if (!img || !read_string(img, image, sizeof image)) continue;
            registry_of(image, registry, sizeof registry);
            if (allowed(registry)) continue;
            printf("{\"allowed\": false, \"message\": \"image ");
            json_escaped(image);
            printf(" comes from registry ");
            json_escaped(registry);
            printf(", which is not one of the allowed registries (");
            for (int i = 0; i < n_registries; i++) {
                if (i) printf(", ");
                json_escaped(registries[i]);
            }
            printf(")\"}\n");
            return 1;
        }
    }
    return 0;
}

static char *read_all(void) {
    char *buf = malloc(MAX_INPUT + 1);
    size_t n = 0, got;
    if (!buf) return NULL;
    while (n < MAX_INPUT && (got = fread(buf + n, 1, MAX_INPUT - n, stdin)) > 0) n += got;
    buf[n] = 0;
    return buf;
}

int main(void) {
    char operation[64] = "";
    char *input = read_all();
    if (!input) { fprintf(stderr, "out of memory\n"); return 2; }
    const char *op = get(input, "operation");
    if (!op || !read_string(op, operation, sizeof operation)) {
        fprintf(stderr, "the input has no operation\n");
        return 2;
    }
    const char *error = load_settings(get(input, "settings"));
    if (strcmp(operation, "validate-settings") == 0) {
        if (error) printf("{\"valid\": false, \"message\": \"%s\"}\n", error);
        else printf("{\"valid\": true}\n");
        return 0;
    }
    if (error) { printf("{\"allowed\": false, \"message\": \"%s\"}\n", error); return 0; }
    if (strcmp(operation, "mutate") == 0) { printf("{\"allowed\": true}\n"); return 0; }
    static const char *const object_path[] = {"request", "object", NULL};
    const char *object = get_path(input, object_path);
    const char *spec = object ? pod_spec(object) : NULL;
    if (!spec || !check_images(spec)) printf("{\"allowed\": true}\n");
    return 0;
}
