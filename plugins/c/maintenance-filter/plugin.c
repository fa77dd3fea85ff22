/*
 * wkube scheduler plugin, WASI preview 1 command (see wit/scheduler/README.md): Filter keeps
 * pods off nodes labelled `maintenance=true`. The label key comes from the settings:
 *
 *   settings: { "labelKey": "maintenance" }      (default "maintenance")
 *
 * Reads one JSON request on stdin, writes one JSON answer on stdout. Only `configure` and
 * `filter` do anything; `pre-filter` answers "all" and `score` zeros.
 *
 * The JSON reader is a small recursive-descent parser into a tree: enough for the host's
 * requests (objects, arrays, strings with escapes, numbers, literals).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct json {
    enum kind kind;
    double num;
    int boolean;
    char *str;             /* J_STR; also the key of an object member */
    char *key;
    struct json *child;    /* first element or member */
    struct json *next;     /* next sibling */
};

static const char *p;

static void skip_ws(void) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
}

static struct json *node(enum kind k) {
    struct json *j = calloc(1, sizeof *j);
    if (!j) { fputs("out of memory\n", stderr); exit(2); }
    j->kind = k;
    return j;
}

static char *parse_string(void) {
    /* p is at the opening quote; escapes other than \uXXXX are decoded, \u is kept as '?'. */
    size_t cap = 16, len = 0;
    char *out = malloc(cap);
    if (!out) exit(2);
    p++;
    while (*p && *p != '"') {
        char c = *p++;
        if (c == '\\') {
            char e = *p++;
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'u': c = '?'; for (int i = 0; i < 4 && *p; i++) p++; break;
            default: c = e;
            }
        }
        if (len + 2 > cap) { cap *= 2; out = realloc(out, cap); if (!out) exit(2); }
        out[len++] = c;
    }
    if (*p == '"') p++;
    out[len] = 0;
    return out;
}

static struct json *parse_value(void);

static struct json *parse_container(enum kind k, char close) {
    struct json *j = node(k), **tail = &j->child;
    p++;
    skip_ws();
    if (*p == close) { p++; return j; }
    for (;;) {
        char *key = NULL;
        skip_ws();
        if (k == J_OBJ) {
            if (*p != '"') return NULL;
            key = parse_string();
            skip_ws();
            if (*p++ != ':') return NULL;
        }
        struct json *v = parse_value();
        if (!v) return NULL;
        v->key = key;
        *tail = v;
        tail = &v->next;
        skip_ws();
        if (*p == ',') { p++; continue; }
        if (*p == close) { p++; return j; }
        return NULL;
    }
}

static struct json *parse_value(void) {
    skip_ws();
    if (*p == '{') return parse_container(J_OBJ, '}');
    if (*p == '[') return parse_container(J_ARR, ']');
    if (*p == '"') { struct json *j = node(J_STR); j->str = parse_string(); return j; }
    if (!strncmp(p, "true", 4)) { struct json *j = node(J_BOOL); j->boolean = 1; p += 4; return j; }
    if (!strncmp(p, "false", 5)) { struct json *j = node(J_BOOL); p += 5; return j; }
    if (!strncmp(p, "null", 4)) { p += 4; return node(J_NULL); }
    char *end;
    double d = strtod(p, &end);
    if (end == p) return NULL;
    p = end;
    struct json *j = node(J_NUM);
    j->num = d;
    return j;
}

static struct json *get(const struct json *obj, const char *key) {
    if (!obj || obj->kind != J_OBJ) return NULL;
    for (struct json *m = obj->child; m; m = m->next)
        if (m->key && !strcmp(m->key, key)) return m;
    return NULL;
}

static char *read_all(void) {
    size_t cap = 1 << 16, len = 0, n;
    char *buf = malloc(cap);
    if (!buf) exit(2);
    while ((n = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
        len += n;
        if (len + 1 >= cap) { cap *= 2; buf = realloc(buf, cap); if (!buf) exit(2); }
    }
    buf[len] = 0;
    return buf;
}

/* Prints a JSON string literal. */
static void put_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') putchar('\\');
        if ((unsigned char)*s < 0x20) { printf("\\u%04x", *s); continue; }
        putchar(*s);
    }
    putchar('"');
}

/* The label key from the settings, or NULL (with an error printed) when they are wrong. */
static const char *label_key(const struct json *settings) {
    const struct json *k = get(settings, "labelKey");
    if (!k) return "maintenance";
    if (k->kind != J_STR || !k->str[0]) {
        printf("{\"error\":\"settings.labelKey must be a non-empty string\"}\n");
        return NULL;
    }
    return k->str;
}

/* Whether the node with this handle carries key=true. */
static int in_maintenance(const struct json *nodes, double handle, const char *key) {
    for (const struct json *n = nodes ? nodes->child : NULL; n; n = n->next) {
        const struct json *h = get(n, "handle");
        if (!h || h->num != handle) continue;
        const struct json *v = get(get(n, "labels"), key);
        return v && v->kind == J_STR && !strcmp(v->str, "true");
    }
    return 0;
}

int main(void) {
    p = read_all();
    struct json *req = parse_value();
    if (!req) { fputs("the request is not JSON\n", stderr); return 1; }
    const struct json *op = get(req, "op");
    const char *key = label_key(get(req, "settings"));
    if (!key) return 0;
    if (!op || op->kind != J_STR) { fputs("no op\n", stderr); return 1; }
    const struct json *cands = get(req, "candidates");
    if (!strcmp(op->str, "configure")) {
        printf("{\"normalization\":\"none\"}\n");
    } else if (!strcmp(op->str, "pre-filter")) {
        printf("{\"result\":\"all\"}\n");
    } else if (!strcmp(op->str, "filter")) {
        const struct json *nodes = get(req, "nodes");
        printf("{\"verdicts\":[");
        for (const struct json *c = cands ? cands->child : NULL; c; c = c->next) {
            if (in_maintenance(nodes, c->num, key)) {
                printf("{\"pass\":false,\"unresolvable\":true,\"reasons\":[");
                char reason[300];
                snprintf(reason, sizeof reason, "node(s) had label %s=true", key);
                put_string(reason);
                printf("]}");
            } else {
                printf("{\"pass\":true}");
            }
            if (c->next) putchar(',');
        }
        printf("]}\n");
    } else if (!strcmp(op->str, "score")) {
        printf("{\"scores\":[");
        for (const struct json *c = cands ? cands->child : NULL; c; c = c->next)
            printf(c->next ? "0," : "0");
        printf("]}\n");
    } else {
        fprintf(stderr, "unknown op %s\n", op->str);
        return 1;
    }
    return 0;
}
