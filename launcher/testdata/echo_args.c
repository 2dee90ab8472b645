/*
 * Test target for tests/test_launcher.py: stands in for an app's executable in
 * versions/<version>/, the same on every OS (Windows can only run an .exe behind the launcher).
 *
 * Prints to stdout, one `key=value` a line:
 *   argv0=<argv[0]>
 *   arg=<hex of each further argument's bytes>     (hex: any byte arrives checkable)
 *   launcher=<GUPPER_LAUNCHER, or (unset)>
 *   pid=<process id>
 *   stdin=<hex of all of stdin>                     (only with ECHO_ARGS_STDIN set)
 * With ECHO_ARGS_STDERR set, writes "echo_args: to stderr" to stderr.
 * Exits with ECHO_ARGS_EXIT (default 0).
 */

#ifdef _WIN32
#  ifndef _CRT_SECURE_NO_WARNINGS
#    define _CRT_SECURE_NO_WARNINGS
#  endif
#  include <fcntl.h>
#  include <io.h>
#  include <process.h>
#  define echo_getpid _getpid
#else
#  ifndef __APPLE__
#    define _XOPEN_SOURCE 700
#  endif
#  include <unistd.h>
#  define echo_getpid getpid
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_hex(const unsigned char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        printf("%02x", s[i]);
}

int main(int argc, char **argv)
{
    const char *code = getenv("ECHO_ARGS_EXIT"), *launcher = getenv("GUPPER_LAUNCHER");
    unsigned char buf[4096];
    size_t n;
    int i;

    printf("argv0=%s\n", argc > 0 ? argv[0] : "");
    for (i = 1; i < argc; i++) {
        printf("arg=");
        print_hex((const unsigned char *)argv[i], strlen(argv[i]));
        printf("\n");
    }
    printf("launcher=%s\n", launcher != NULL ? launcher : "(unset)");
    printf("pid=%ld\n", (long)echo_getpid());
    if (getenv("ECHO_ARGS_STDIN") != NULL) {
#ifdef _WIN32
        _setmode(_fileno(stdin), _O_BINARY);
#endif
        printf("stdin=");
        while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
            print_hex(buf, n);
        printf("\n");
    }
    if (getenv("ECHO_ARGS_STDERR") != NULL)
        fprintf(stderr, "echo_args: to stderr\n");
    fflush(stdout);
    return code != NULL ? atoi(code) : 0;
}
