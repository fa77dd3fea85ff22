/* A wasm workload in C, built with clang and Debian's wasi-libc:
 *   clang --target=wasm32-wasi -O2 -o hello-c.wasm hello.c
 * Prints its arguments and the GREETING variable, then exits with the code given by
 * EXIT_CODE (default 0). */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    printf("hello from C compiled to wasm (%d args)\n", argc);
    for (int i = 0; i < argc; i++) {
        printf("argv[%d] = %s\n", i, argv[i]);
    }
    const char *greeting = getenv("GREETING");
    printf("GREETING=%s\n", greeting ? greeting : "(unset)");
    const char *code = getenv("EXIT_CODE");
    return code ? atoi(code) : 0;
}
