/*
 * Gupper launcher: the stable entry point of a one-folder install.
 *
 *     <root>/<app>[.exe]                  this program, copied (not linked) under the app's name
 *     <root>/current/<app>[.exe], ...     the app itself, at one path for every version (Windows), or
 *     <root>/current                      a pointer to versions/<version> (the earlier layout, and POSIX)
 *     <root>/versions/<version>/...       other versions: a new one waiting, the previous one (rollback)
 *     <root>/next                         a switch to make before the next start of the app
 *
 * Shortcuts, the Start menu and PATH point at <root>/<app>.exe, which never changes; updates never
 * replace it. The launcher is installed once by the installer.
 *
 * What it does, on every start:
 *   1. finds its own full path (Windows: GetModuleFileNameW; Linux: /proc/self/exe; macOS:
 *      _NSGetExecutablePath + realpath; other POSIX: realpath(argv[0])), so it works from any
 *      working directory and through a symlink to it (POSIX);
 *   2. when started by an app's restart (_GUPPER_HANDOVER=handle:<n> on Windows, fd:<n> on POSIX:
 *      gupper/restart.py), waits until that app has ended (at most 30 s), and removes the variable;
 *   3. makes a pending switch: <dir>/next holds two lines, versions\<new> and versions\<old>
 *      (updater/gupper/layouts/windows.py writes it). When `current` is a folder and no process runs
 *      from it (each running app holds one byte past the end of its program, LockFileEx, shared;
 *      POSIX: flock on the folder; gupper/_lock.py), `current` is moved to versions\<old> and
 *      versions\<new> to `current`, each move retried while antivirus holds a file; a kill between
 *      the two is finished here next time; then `next` is removed. Anything in the way (an app still
 *      running, versions\<old> already there) leaves the switch for a later start; a malformed
 *      `next` is ignored (the updater removes it);
 *   4. when `current` is a folder, runs current/<own file name>; else reads `current`: a pointer
 *      file holding one line `versions\<version>` (as the updater writes it on Windows) or
 *      `versions/<version>`, or, on POSIX, a symlink to `versions/<version>`; a trailing CR/LF and
 *      a leading UTF-8 byte order mark are ignored. It validates it strictly: `versions`, one `/`
 *      or `\`, then a version name of 1 to 246 of [A-Za-z0-9._+-] that is not `.` or `..` (255
 *      bytes at most in all); anything else (absolute paths, drive letters, `..`, spaces, several
 *      lines, NUL bytes, UTF-16) is refused. It then runs <dir>/versions/<version>/<own file name>,
 *      so one binary serves any app: `app.exe` runs `versions\<version>\app.exe`:
 *      - Windows: CreateProcessW with the original command line minus the program name
 *        (GetCommandLineW, the program name skipped by the C runtime's rules, the rest passed
 *        byte for byte), standard handles and the show-window state inherited, Ctrl+C left to
 *        the app, the app put in a kill-on-close job (killing the launcher kills the app, not
 *        the processes the app starts); it waits and exits with the app's exit code;
 *      - POSIX: execv with the same arguments (argv[0] = the target's path): same pid, signals
 *        and exit code go straight to the app.
 *
 * Environment: the app gets GUPPER_LAUNCHER=<full path of this launcher>, so it can restart
 * through the stable entry point (and knows it was started by it). Everything else is passed
 * through unchanged.
 *
 * Exit codes of the launcher itself (any other code is the app's):
 *   126  `current` is missing, unreadable or malformed, or the launcher cannot find its own
 *        path: nothing was run;
 *   127  the app cannot be started (missing, not executable): nothing was run.
 * Either way one line goes to stderr, naming the file and ending in "reinstall the app" (a
 * windowed build without a stderr shows it in a message box instead).
 *
 * Build: python launcher/build.py --out DIR [--name app] [--windowed]
 * (any C11 compiler: gcc/clang/cc, MinGW-w64, or MSVC `cl`; no dependencies). On Windows use
 * --windowed (GUI subsystem, no console window) for windowed apps, the default console build for
 * console apps.
 */

#ifdef _WIN32
#  ifndef _CRT_SECURE_NO_WARNINGS
#    define _CRT_SECURE_NO_WARNINGS
#  endif
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  include <windows.h>
#  include <string.h>
#  ifdef _MSC_VER
#    pragma comment(lib, "user32.lib")
#  endif
#else
#  ifdef __APPLE__
#    define _DARWIN_C_SOURCE
#  else
#    define _XOPEN_SOURCE 700
#  endif
#  include <errno.h>
#  include <fcntl.h>
#  include <limits.h>
#  include <stdio.h>
#  include <stdlib.h>
#  include <string.h>
#  include <poll.h>
#  include <sys/file.h>
#  include <sys/stat.h>
#  include <sys/types.h>
#  include <unistd.h>
#  ifdef __APPLE__
#    include <mach-o/dyld.h>
#    include <stdint.h>
#  endif
#endif

#include <stddef.h>

#define EXIT_BAD_CURRENT 126  /* `current` missing, unreadable or malformed */
#define EXIT_CANNOT_START 127 /* the version's executable cannot be started */

#define CURRENT_NAME "current"
#define VERSIONS_NAME "versions"
#define POINTER_MAX 255 /* longest accepted content of `current`, line ending excluded */
#define POINTER_BUF 512 /* bytes read from `current`: a file filling this is too long */
#define NEXT_NAME "next"
#define HANDOVER_VAR "_GUPPER_HANDOVER"
#define HANDOVER_WAIT_MS 30000 /* as gupper/restart.py's HANDOVER_TIMEOUT */

#ifdef _WIN32
#  define BAD_FORMAT "does not name a version folder (expected one line: " VERSIONS_NAME "\\<version>)"
#else
#  define BAD_FORMAT "does not name a version folder (expected one line: " VERSIONS_NAME "/<version>)"
#endif

static int version_char_ok(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '+' || c == '-';
}

/* Checks what `current` holds (a pointer file's bytes or a symlink's target) and finds the
 * version it names. Returns NULL with *version and *version_len set, or why it is refused. */
static const char *parse_pointer(const char *text, size_t len, const char **version, size_t *version_len)
{
    const size_t prefix = sizeof VERSIONS_NAME - 1;
    const char *name;
    size_t i, n;

    if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB && (unsigned char)text[2] == 0xBF) {
        text += 3; /* a UTF-8 byte order mark, as some Windows editors and PowerShell 5 write */
        len -= 3;
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    if (len == 0)
        return "is empty";
    if (len > POINTER_MAX)
        return "is too long (more than 255 bytes)";
    if (len <= prefix + 1 || memcmp(text, VERSIONS_NAME, prefix) != 0 || (text[prefix] != '/' && text[prefix] != '\\'))
        return BAD_FORMAT;
    name = text + prefix + 1;
    n = len - prefix - 1;
    for (i = 0; i < n; i++)
        if (!version_char_ok(name[i]))
            return BAD_FORMAT;
    if ((n == 1 && name[0] == '.') || (n == 2 && name[0] == '.' && name[1] == '.'))
        return BAD_FORMAT;
    *version = name;
    *version_len = n;
    return NULL;
}

/* Checks what `next` holds: two lines, the version folder to switch to and the one `current`
 * moves to, each as parse_pointer takes it. Returns 0 with both found, or -1 (ignored). */
static int parse_next(const char *text, size_t len, const char **to, size_t *to_len, const char **from, size_t *from_len)
{
    size_t first;
    for (first = 0; first < len && text[first] != '\n'; first++)
        ;
    if (first >= len || parse_pointer(text, first, to, to_len) != NULL)
        return -1;
    return parse_pointer(text + first + 1, len - first - 1, from, from_len) == NULL ? 0 : -1;
}

#ifdef _WIN32

#define WPATH_MAX 32768 /* the longest path or command line Windows takes */
#define MESSAGE_MAX 4096

static wchar_t g_self[WPATH_MAX], g_current[WPATH_MAX], g_target[WPATH_MAX];
static wchar_t g_message[MESSAGE_MAX];
static char g_message_utf8[MESSAGE_MAX * 3 + 3];

/* Appends s to buf (capacity cap, *len used); returns 0, or -1 (and appends nothing) if it does not fit. */
static int wappend(wchar_t *buf, size_t cap, size_t *len, const wchar_t *s, size_t n)
{
    size_t i;
    if (n >= cap - *len)
        return -1;
    for (i = 0; i < n; i++)
        buf[*len + i] = s[i];
    *len += n;
    buf[*len] = L'\0';
    return 0;
}

static size_t wlen(const wchar_t *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static int wappend_z(wchar_t *buf, size_t cap, size_t *len, const wchar_t *s)
{
    return wappend(buf, cap, len, s, wlen(s));
}

/* Appends ASCII text (the shared messages, a validated version name), widened. */
static int wappend_ascii(wchar_t *buf, size_t cap, size_t *len, const char *s, size_t n)
{
    size_t i;
    if (n >= cap - *len)
        return -1;
    for (i = 0; i < n; i++)
        buf[*len + i] = (wchar_t)(unsigned char)s[i];
    *len += n;
    buf[*len] = L'\0';
    return 0;
}

static void wappend_error(wchar_t *buf, size_t cap, size_t *len, DWORD code)
{
    wchar_t text[512], digits[16];
    DWORD n = FormatMessageW(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, code, 0, text, 512, NULL);
    size_t d = 16;
    while (n > 0 && (text[n - 1] == L'\r' || text[n - 1] == L'\n' || text[n - 1] == L' ' || text[n - 1] == L'.'))
        n--;
    if (n > 0) {
        wappend(buf, cap, len, text, n);
        wappend_z(buf, cap, len, L", ");
    }
    wappend_z(buf, cap, len, L"error ");
    do {
        digits[--d] = (wchar_t)(L'0' + code % 10);
        code /= 10;
    } while (code > 0 && d > 0);
    wappend(buf, cap, len, digits + d, 16 - d);
}

static int is_gui_subsystem(void)
{
    const BYTE *base = (const BYTE *)GetModuleHandleW(NULL);
    const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)base;
    const IMAGE_NT_HEADERS *nt = (const IMAGE_NT_HEADERS *)(base + dos->e_lfanew);
    return nt->OptionalHeader.Subsystem == IMAGE_SUBSYSTEM_WINDOWS_GUI;
}

/* One line on stderr (console: as wide text; pipe or file: UTF-8); a windowed build without a
 * stderr shows a message box instead. */
static void report(const wchar_t *title)
{
    HANDLE err = GetStdHandle(STD_ERROR_HANDLE);
    size_t len = wlen(g_message);
    DWORD mode, written;
    int n;

    if (err != NULL && err != INVALID_HANDLE_VALUE) {
        if (GetConsoleMode(err, &mode)) {
            WriteConsoleW(err, g_message, (DWORD)len, &written, NULL);
            WriteConsoleW(err, L"\r\n", 2, &written, NULL);
            return;
        }
        n = WideCharToMultiByte(CP_UTF8, 0, g_message, (int)len, g_message_utf8, (int)sizeof g_message_utf8 - 2, NULL, NULL);
        if (n < 0)
            n = 0;
        g_message_utf8[n++] = '\r';
        g_message_utf8[n++] = '\n';
        if (WriteFile(err, g_message_utf8, (DWORD)n, &written, NULL))
            return;
    }
    if (is_gui_subsystem())
        MessageBoxW(NULL, g_message, title, MB_OK | MB_ICONERROR);
}

/* "<name>: <subject> <reason>[ (<error>)]; reinstall the app" and the exit code. */
static void fail(const wchar_t *name, const wchar_t *subject, const char *reason, DWORD error, UINT exit_code)
{
    size_t len = 0;
    g_message[0] = L'\0';
    wappend_z(g_message, MESSAGE_MAX, &len, name);
    wappend_z(g_message, MESSAGE_MAX, &len, L": ");
    wappend_z(g_message, MESSAGE_MAX, &len, subject);
    wappend_z(g_message, MESSAGE_MAX, &len, L" ");
    wappend_ascii(g_message, MESSAGE_MAX, &len, reason, strlen(reason));
    if (error != 0) {
        wappend_z(g_message, MESSAGE_MAX, &len, L" (");
        wappend_error(g_message, MESSAGE_MAX, &len, error);
        wappend_z(g_message, MESSAGE_MAX, &len, L")");
    }
    wappend_z(g_message, MESSAGE_MAX, &len, L"; reinstall the app");
    report(name);
    ExitProcess(exit_code);
}

/* The command line after the program name, skipped as the C runtime parses argv[0]: quotes
 * toggle, no escapes, up to the first space or tab outside quotes; then the blanks after it. */
static const wchar_t *arguments_tail(const wchar_t *cmd)
{
    int quoted = 0;
    for (; *cmd; cmd++) {
        if (*cmd == L'"')
            quoted = !quoted;
        else if (!quoted && (*cmd == L' ' || *cmd == L'\t'))
            break;
    }
    while (*cmd == L' ' || *cmd == L'\t')
        cmd++;
    return cmd;
}

static BOOL WINAPI ignore_ctrl(DWORD type)
{
    (void)type;
    return TRUE; /* the app shares the console and gets Ctrl+C itself; the launcher waits for it */
}

/* An inheritable duplicate of a standard handle (or the handle itself, or NULL when none). */
static HANDLE inheritable(DWORD which)
{
    HANDLE h = GetStdHandle(which), dup;
    if (h == NULL || h == INVALID_HANDLE_VALUE)
        return NULL;
    if (!DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &dup, 0, TRUE, DUPLICATE_SAME_ACCESS))
        return h;
    return dup;
}

/* Started by an app's restart_on_exit (gupper/restart.py): wait until that process has ended (it
 * passed an inheritable handle to itself), so that nothing runs from `current` any more. */
static void wait_handover(void)
{
    wchar_t value[64];
    const wchar_t *p;
    unsigned long long handle = 0;
    DWORD n = GetEnvironmentVariableW(L"" HANDOVER_VAR, value, 64);

    if (n == 0 || n >= 64)
        return;
    SetEnvironmentVariableW(L"" HANDOVER_VAR, NULL); /* the app must not wait again */
    if (value[0] != L'h' || value[1] != L'a' || value[2] != L'n' || value[3] != L'd' || value[4] != L'l' ||
        value[5] != L'e' || value[6] != L':' || value[7] == L'\0')
        return;
    for (p = value + 7; *p; p++) {
        if (*p < L'0' || *p > L'9')
            return;
        handle = handle * 10 + (unsigned long long)(*p - L'0');
    }
    WaitForSingleObject((HANDLE)(ULONG_PTR)handle, HANDOVER_WAIT_MS);
    CloseHandle((HANDLE)(ULONG_PTR)handle);
}

static DWORD attributes(const wchar_t *path)
{
    return GetFileAttributesW(path);
}

static int is_folder(const wchar_t *path)
{
    DWORD a = attributes(path);
    return a != INVALID_FILE_ATTRIBUTES && (a & FILE_ATTRIBUTE_DIRECTORY) && !(a & FILE_ATTRIBUTE_REPARSE_POINT);
}

/* Whether a running app holds `program` (each holds one byte far past its end, LockFileEx, shared;
 * gupper/_lock.py): an exclusive try fails then. A program that cannot be opened counts as in use. */
static int in_use(const wchar_t *program)
{
    OVERLAPPED at;
    BOOL free_now;
    HANDLE f = CreateFileW(program, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                           OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    if (f == INVALID_HANDLE_VALUE)
        return GetLastError() != ERROR_FILE_NOT_FOUND && GetLastError() != ERROR_PATH_NOT_FOUND;
    ZeroMemory(&at, sizeof at);
    at.OffsetHigh = 0x40000000u; /* offset 1 << 62 */
    free_now = LockFileEx(f, LOCKFILE_EXCLUSIVE_LOCK | LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &at);
    if (free_now)
        UnlockFileEx(f, 0, 1, 0, &at);
    CloseHandle(f);
    return !free_now;
}

/* MoveFileExW, retried while antivirus holds a fresh file (0.05 s doubling to 1 s, 8 tries). */
static BOOL move_retried(const wchar_t *from, const wchar_t *to)
{
    DWORD delay = 50, error;
    int i;
    for (i = 0; i < 8; i++) {
        if (MoveFileExW(from, to, 0))
            return TRUE;
        error = GetLastError();
        if (error != ERROR_ACCESS_DENIED && error != ERROR_SHARING_VIOLATION)
            return FALSE;
        Sleep(delay);
        delay = delay * 2 > 1000 ? 1000 : delay * 2;
    }
    return FALSE;
}

static wchar_t g_next[WPATH_MAX], g_to[WPATH_MAX], g_from[WPATH_MAX], g_program[WPATH_MAX];

/* dir + text (ASCII) [+ "\\" + text2 of len2]; 0, or -1 when too long. */
static int join(wchar_t *out, const wchar_t *dir, size_t dir_len, const char *a, const char *b, size_t b_len)
{
    size_t len = 0;
    if (wappend(out, WPATH_MAX, &len, dir, dir_len) != 0 || wappend_ascii(out, WPATH_MAX, &len, a, strlen(a)) != 0)
        return -1;
    if (b != NULL && (wappend_z(out, WPATH_MAX, &len, L"\\") != 0 || wappend_ascii(out, WPATH_MAX, &len, b, b_len) != 0))
        return -1;
    return 0;
}

/* A pending switch (`next`, written by the updater when `current` is a folder): `current` becomes
 * versions\<from> and versions\<to> becomes `current`, only while no app runs from `current`
 * (Windows can move neither a running program nor its folder). Anything that stands in the way
 * leaves it for a later start; a kill between the two moves is finished here next time. */
static void apply_switch(size_t dir_len, const wchar_t *name)
{
    char text[2 * POINTER_BUF];
    const char *to, *from;
    size_t to_len, from_len, len = 0;
    DWORD got;
    HANDLE file;

    if (join(g_next, g_self, dir_len, NEXT_NAME, NULL, 0) != 0 || attributes(g_next) == INVALID_FILE_ATTRIBUTES)
        return;
    file = CreateFileW(g_next, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                       FILE_ATTRIBUTE_NORMAL, NULL);
    if (file == INVALID_HANDLE_VALUE)
        return;
    while (len < sizeof text && ReadFile(file, text + len, (DWORD)(sizeof text - len), &got, NULL) && got > 0)
        len += got;
    CloseHandle(file);
    if (len >= sizeof text || parse_next(text, len, &to, &to_len, &from, &from_len) != 0)
        return; /* malformed: the updater removes it */
    if (join(g_to, g_self, dir_len, VERSIONS_NAME, to, to_len) != 0 || join(g_from, g_self, dir_len, VERSIONS_NAME, from, from_len) != 0 ||
        join(g_current, g_self, dir_len, CURRENT_NAME, NULL, 0) != 0)
        return;
    len = 0;
    if (wappend_z(g_program, WPATH_MAX, &len, g_current) != 0 || wappend_z(g_program, WPATH_MAX, &len, L"\\") != 0 ||
        wappend_z(g_program, WPATH_MAX, &len, name) != 0)
        return;
    if (!is_folder(g_to)) {
        if (attributes(g_current) != INVALID_FILE_ATTRIBUTES)
            DeleteFileW(g_next); /* switched already, or nothing to switch to */
        return;
    }
    if (attributes(g_current) != INVALID_FILE_ATTRIBUTES) {
        if (!is_folder(g_current) || attributes(g_from) != INVALID_FILE_ATTRIBUTES || in_use(g_program))
            return;
        if (!move_retried(g_current, g_from))
            return;
    }
    if (!move_retried(g_to, g_current)) {
        move_retried(g_from, g_current);
        return;
    }
    DeleteFileW(g_next);
}

int main(void)
{
    char pointer[POINTER_BUF];
    const char *version = NULL, *reason;
    size_t version_len = 0, dir_len, len, tail_len;
    const wchar_t *name, *tail;
    wchar_t *cmdline;
    DWORD n, got, code;
    HANDLE file, job;
    STARTUPINFOW si, parent;
    PROCESS_INFORMATION pi;
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION limits;

    n = GetModuleFileNameW(NULL, g_self, WPATH_MAX);
    if (n == 0 || n >= WPATH_MAX)
        fail(L"gupper launcher", L"its own path", "cannot be found", GetLastError(), EXIT_BAD_CURRENT);
    for (dir_len = n; dir_len > 0 && g_self[dir_len - 1] != L'\\' && g_self[dir_len - 1] != L'/'; dir_len--)
        ;
    name = g_self + dir_len;
    if (dir_len == 0 || *name == L'\0')
        fail(L"gupper launcher", g_self, "is not a full path", 0, EXIT_BAD_CURRENT);

    wait_handover();
    apply_switch(dir_len, name);
    len = 0;
    if (wappend(g_current, WPATH_MAX, &len, g_self, dir_len) != 0 || wappend_z(g_current, WPATH_MAX, &len, L"" CURRENT_NAME) != 0)
        fail(name, g_self, "is too long a path", 0, EXIT_BAD_CURRENT);
    if (is_folder(g_current)) { /* the app's own folder, at one path for every version */
        if (wappend_z(g_current, WPATH_MAX, &len, L"\\") != 0 || wappend_z(g_current, WPATH_MAX, &len, name) != 0)
            fail(name, g_self, "is too long a path", 0, EXIT_CANNOT_START);
        memcpy(g_target, g_current, (len + 1) * sizeof(wchar_t));
        goto start;
    }
    /* FILE_SHARE_DELETE: an update may rename a new pointer file over this one meanwhile. */
    file = CreateFileW(g_current, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                       FILE_ATTRIBUTE_NORMAL, NULL);
    if (file == INVALID_HANDLE_VALUE) {
        DWORD error = GetLastError();
        if (error == ERROR_FILE_NOT_FOUND || error == ERROR_PATH_NOT_FOUND)
            fail(name, g_current, "is missing", 0, EXIT_BAD_CURRENT);
        fail(name, g_current, "cannot be read", error, EXIT_BAD_CURRENT);
    }
    len = 0;
    while (len < POINTER_BUF) {
        if (!ReadFile(file, pointer + len, (DWORD)(POINTER_BUF - len), &got, NULL))
            fail(name, g_current, "cannot be read", GetLastError(), EXIT_BAD_CURRENT);
        if (got == 0)
            break;
        len += got;
    }
    CloseHandle(file);
    reason = len >= POINTER_BUF ? "is too long (more than 255 bytes)" : parse_pointer(pointer, len, &version, &version_len);
    if (reason != NULL)
        fail(name, g_current, reason, 0, EXIT_BAD_CURRENT);

    len = 0;
    if (wappend(g_target, WPATH_MAX, &len, g_self, dir_len) != 0 || wappend_z(g_target, WPATH_MAX, &len, L"" VERSIONS_NAME L"\\") != 0 ||
        wappend_ascii(g_target, WPATH_MAX, &len, version, version_len) != 0 || wappend_z(g_target, WPATH_MAX, &len, L"\\") != 0 ||
        wappend_z(g_target, WPATH_MAX, &len, name) != 0)
        fail(name, g_self, "is too long a path", 0, EXIT_CANNOT_START);

start:
    len = wlen(g_target);
    /* "<target>" <the original arguments, untouched> */
    tail = arguments_tail(GetCommandLineW());
    tail_len = wlen(tail);
    cmdline = (wchar_t *)HeapAlloc(GetProcessHeap(), 0, (len + tail_len + 4) * sizeof(wchar_t));
    if (cmdline == NULL)
        fail(name, g_target, "cannot be started", ERROR_NOT_ENOUGH_MEMORY, EXIT_CANNOT_START);
    n = 0;
    cmdline[n++] = L'"';
    memcpy(cmdline + n, g_target, len * sizeof(wchar_t));
    n += (DWORD)len;
    cmdline[n++] = L'"';
    if (tail_len > 0) {
        cmdline[n++] = L' ';
        memcpy(cmdline + n, tail, tail_len * sizeof(wchar_t));
        n += (DWORD)tail_len;
    }
    cmdline[n] = L'\0';

    if (!SetEnvironmentVariableW(L"GUPPER_LAUNCHER", g_self))
        fail(name, g_target, "cannot be started", GetLastError(), EXIT_CANNOT_START);
    SetConsoleCtrlHandler(ignore_ctrl, TRUE);

    job = CreateJobObjectW(NULL, NULL);
    if (job != NULL) {
        ZeroMemory(&limits, sizeof limits);
        limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE | JOB_OBJECT_LIMIT_SILENT_BREAKAWAY_OK;
        if (!SetInformationJobObject(job, JobObjectExtendedLimitInformation, &limits, sizeof limits)) {
            CloseHandle(job);
            job = NULL;
        }
    }

    ZeroMemory(&si, sizeof si);
    si.cb = sizeof si;
    GetStartupInfoW(&parent);
    if (parent.dwFlags & STARTF_USESHOWWINDOW) { /* a shortcut's "Run: minimized/maximized" */
        si.dwFlags |= STARTF_USESHOWWINDOW;
        si.wShowWindow = parent.wShowWindow;
    }
    si.dwFlags |= STARTF_USESTDHANDLES;
    si.hStdInput = inheritable(STD_INPUT_HANDLE);
    si.hStdOutput = inheritable(STD_OUTPUT_HANDLE);
    si.hStdError = inheritable(STD_ERROR_HANDLE);
    ZeroMemory(&pi, sizeof pi);
    if (!CreateProcessW(g_target, cmdline, NULL, NULL, TRUE, CREATE_SUSPENDED, NULL, NULL, &si, &pi))
        fail(name, g_target, "cannot be started", GetLastError(), EXIT_CANNOT_START);
    if (job != NULL)
        AssignProcessToJobObject(job, pi.hProcess); /* best effort: fails in a job that forbids nesting */
    ResumeThread(pi.hThread);
    CloseHandle(pi.hThread);
    if (is_gui_subsystem()) {
        MSG msg; /* end the "app starting" cursor for this process: the app shows its own */
        PostMessageW(NULL, WM_NULL, 0, 0);
        GetMessageW(&msg, NULL, 0, 0);
    }
    WaitForSingleObject(pi.hProcess, INFINITE);
    if (!GetExitCodeProcess(pi.hProcess, &code))
        code = EXIT_CANNOT_START;
    ExitProcess(code);
    return (int)code;
}

#else /* POSIX */

static char g_reason[256];

/* Own full path: the kernel's word where there is one, else argv[0] resolved. */
static int self_path(char *out, const char *argv0)
{
#if defined(__linux__)
    ssize_t n = readlink("/proc/self/exe", out, PATH_MAX);
    if (n > 0 && n < PATH_MAX) {
        out[n] = '\0';
        return 0;
    }
#elif defined(__APPLE__)
    char raw[PATH_MAX];
    uint32_t size = sizeof raw;
    if (_NSGetExecutablePath(raw, &size) == 0 && realpath(raw, out) != NULL)
        return 0;
#endif
    if (argv0 != NULL && strchr(argv0, '/') != NULL && realpath(argv0, out) != NULL)
        return 0;
    return -1;
}

/* Reads `current` into buf (a symlink's target, or a pointer file's bytes); returns NULL or why not. */
static const char *read_current(const char *path, char *buf, size_t *len)
{
    ssize_t n = readlink(path, buf, POINTER_BUF);
    int fd;

    if (n >= 0) {
        if (n >= POINTER_BUF)
            return "is too long (more than 255 bytes)";
        *len = (size_t)n;
        return NULL;
    }
    if (errno == ENOENT)
        return "is missing";
    if (errno != EINVAL) { /* EINVAL: not a symlink, so a pointer file */
        snprintf(g_reason, sizeof g_reason, "cannot be read (%s)", strerror(errno));
        return g_reason;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(g_reason, sizeof g_reason, "cannot be read (%s)", strerror(errno));
        return g_reason;
    }
    *len = 0;
    while (*len < POINTER_BUF) {
        n = read(fd, buf + *len, POINTER_BUF - *len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(g_reason, sizeof g_reason, "cannot be read (%s)", strerror(errno));
            close(fd);
            return g_reason;
        }
        if (n == 0)
            break;
        *len += (size_t)n;
    }
    close(fd);
    return *len >= POINTER_BUF ? "is too long (more than 255 bytes)" : NULL;
}

/* Started by an app's restart_on_exit (gupper/restart.py): wait until that process has ended (the
 * read end of a pipe whose write end only it held reads end-of-file). */
static int wait_handover(void)
{
    const char *value = getenv(HANDOVER_VAR);
    struct pollfd pipe_end;
    char byte;
    long fd;
    char *end;

    if (value == NULL)
        return 0;
    fd = strncmp(value, "fd:", 3) == 0 ? strtol(value + 3, &end, 10) : -1;
    if (fd >= 0 && *end == '\0' && value[3] != '\0') {
        pipe_end.fd = (int)fd;
        pipe_end.events = POLLIN;
        if (poll(&pipe_end, 1, HANDOVER_WAIT_MS) > 0)
            (void)read((int)fd, &byte, 1);
        close((int)fd);
    }
    unsetenv(HANDOVER_VAR); /* the app must not wait again */
    return 1;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static int is_folder(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whether a running app holds the folder (each holds its program's folder, flock, shared;
 * gupper/_lock.py): an exclusive try fails then. One that cannot be opened counts as in use. */
static int in_use(const char *folder)
{
    int fd = open(folder, O_RDONLY | O_CLOEXEC | O_DIRECTORY), busy;
    if (fd < 0)
        return errno != ENOENT;
    busy = flock(fd, LOCK_EX | LOCK_NB) != 0;
    close(fd);
    return busy;
}

/* A pending switch (`next`, written by the updater when `current` is a folder, the Windows layout;
 * the same logic runs here, where it is tested): `current` becomes versions/<from> and
 * versions/<to> becomes `current`, only while no app runs from `current`. */
static void apply_switch(int dir_len, const char *self, int handed_over)
{
    static char next[PATH_MAX + 8], to_path[PATH_MAX + POINTER_MAX + 2], from_path[PATH_MAX + POINTER_MAX + 2],
        current[PATH_MAX + sizeof CURRENT_NAME + 1];
    char text[2 * POINTER_BUF];
    const char *to, *from;
    size_t to_len, from_len, len = 0;
    ssize_t got;
    int fd, tries;

    snprintf(next, sizeof next, "%.*s/%s", dir_len, self, NEXT_NAME);
    fd = open(next, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return;
    while (len < sizeof text && (got = read(fd, text + len, sizeof text - len)) > 0)
        len += (size_t)got;
    close(fd);
    if (len >= sizeof text || parse_next(text, len, &to, &to_len, &from, &from_len) != 0)
        return; /* malformed: the updater removes it */
    snprintf(to_path, sizeof to_path, "%.*s/%s/%.*s", dir_len, self, VERSIONS_NAME, (int)to_len, to);
    snprintf(from_path, sizeof from_path, "%.*s/%s/%.*s", dir_len, self, VERSIONS_NAME, (int)from_len, from);
    snprintf(current, sizeof current, "%.*s/%s", dir_len, self, CURRENT_NAME);
    if (!is_folder(to_path)) {
        if (exists(current))
            unlink(next); /* switched already, or nothing to switch to */
        return;
    }
    if (exists(current)) {
        if (!is_folder(current) || exists(from_path))
            return;
        /* The pipe of a handover reads end-of-file as the old app's first descriptor closes; its
         * others (its hold on `current`) close in the same exit: give them a moment, bounded. */
        for (tries = handed_over ? 40 : 1; in_use(current); tries--) {
            if (tries <= 1)
                return;
            poll(NULL, 0, 25);
        }
        if (rename(current, from_path) != 0)
            return;
    }
    if (rename(to_path, current) != 0) {
        (void)rename(from_path, current);
        return;
    }
    unlink(next);
}

int main(int argc, char **argv)
{
    static char self[PATH_MAX], current[PATH_MAX + sizeof CURRENT_NAME + 1], target[PATH_MAX + POINTER_MAX + 2];
    char pointer[POINTER_BUF];
    char *fallback_argv[2];
    const char *name, *reason, *version = NULL, *slash;
    size_t version_len = 0, len = 0;
    int dir_len, n;

    if (self_path(self, argc > 0 ? argv[0] : NULL) != 0) {
        fprintf(stderr, "gupper launcher: its own path cannot be found (%s); reinstall the app\n", strerror(errno));
        return EXIT_BAD_CURRENT;
    }
    slash = strrchr(self, '/');
    if (slash == NULL || slash[1] == '\0') {
        fprintf(stderr, "gupper launcher: %s is not a full path; reinstall the app\n", self);
        return EXIT_BAD_CURRENT;
    }
    name = slash + 1;
    dir_len = (int)(slash - self);

    apply_switch(dir_len, self, wait_handover());
    snprintf(current, sizeof current, "%.*s/%s", dir_len, self, CURRENT_NAME);
    if (is_folder(current)) { /* the app's own folder, at one path for every version */
        n = snprintf(target, sizeof target, "%s/%s", current, name);
        if (n < 0 || (size_t)n >= sizeof target) {
            fprintf(stderr, "%s: %s is too long a path; reinstall the app\n", name, self);
            return EXIT_CANNOT_START;
        }
        goto start;
    }
    reason = read_current(current, pointer, &len);
    if (reason == NULL)
        reason = parse_pointer(pointer, len, &version, &version_len);
    if (reason != NULL) {
        fprintf(stderr, "%s: %s %s; reinstall the app\n", name, current, reason);
        return EXIT_BAD_CURRENT;
    }

    n = snprintf(target, sizeof target, "%.*s/%s/%.*s/%s", dir_len, self, VERSIONS_NAME, (int)version_len, version, name);
    if (n < 0 || (size_t)n >= sizeof target) {
        fprintf(stderr, "%s: %s is too long a path; reinstall the app\n", name, self);
        return EXIT_CANNOT_START;
    }
start:
    if (setenv("GUPPER_LAUNCHER", self, 1) != 0) {
        fprintf(stderr, "%s: %s cannot be started (%s); reinstall the app\n", name, target, strerror(errno));
        return EXIT_CANNOT_START;
    }
    if (argc < 1) { /* no argv[0] to replace: the array is only its NULL terminator */
        fallback_argv[0] = target;
        fallback_argv[1] = NULL;
        argv = fallback_argv;
    } else {
        argv[0] = target;
    }
    execv(target, argv);
    fprintf(stderr, "%s: %s cannot be started (%s); reinstall the app\n", name, target, strerror(errno));
    return EXIT_CANNOT_START;
}

#endif
