/*
 * bench/helper.c: the tiny programs the benchmark runs, in one binary.
 * Compiled at bench time into bench/out/helper (see bench.py). Every
 * timestamp is CLOCK_MONOTONIC in nanoseconds, the clock Python's
 * time.monotonic_ns() reads, so the bench can compare them directly.
 * Output goes to stdout with write(2), one "tag value..." line per event.
 *
 *   helper launch CMD ARGS...    print "launch NS", then execvp(CMD)
 *   helper runtime CMD ARGS...   fork+exec CMD, wait, print "runtime NS" (elapsed)
 *   helper stamp                 print "child NS" at main() and exit 0
 *   helper signals               SIGUSR1 -> print "usr1 NS"; SIGTERM -> print
 *                                "term NS" and exit 0; prints "ready" once set up
 *   helper notify DELAY_MS       like signals; after DELAY_MS print "ready NS"
 *                                and send READY=1 to $NOTIFY_SOCKET
 *   helper listen PORT DELAY_MS  like signals; after DELAY_MS listen on
 *                                127.0.0.1:PORT, print "ready NS", accept forever
 *   helper orphans N TIMEOUT_MS  make N orphans (reparented to PID 1), let them
 *                                all exit at once, wait until PID 1 has reaped
 *                                them; print "orphans ELAPSED_NS ZOMBIES_LEFT"
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void say(const char *tag, long long value) {
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%s %lld\n", tag, value);
    (void)!write(1, buf, (size_t)n);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static void on_usr1(int signo) {
    (void)signo;
    say("usr1", now_ns());  /* clock_gettime, snprintf into a local, write: safe enough here */
}

static void on_term(int signo) {
    (void)signo;
    say("term", now_ns());
    _exit(0);
}

static void install_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}

static _Noreturn void cmd_signals(void) {
    install_handlers();
    (void)!write(1, "ready\n", 6);
    for (;;)
        pause();
}

static _Noreturn void cmd_notify(long delay_ms) {
    install_handlers();
    sleep_ms(delay_ms);
    const char *path = getenv("NOTIFY_SOCKET");
    long long t = now_ns();
    if (path == NULL || path[0] == '\0') {
        say("error-no-notify-socket", 0);
    } else {
        struct sockaddr_un addr;
        memset(&addr, 0, sizeof addr);
        addr.sun_family = AF_UNIX;
        size_t len = strlen(path);
        if (len >= sizeof addr.sun_path)
            len = sizeof addr.sun_path - 1;
        memcpy(addr.sun_path, path, len);
        if (path[0] == '@')
            addr.sun_path[0] = '\0';  /* abstract namespace */
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        t = now_ns();
        if (sendto(fd, "READY=1", 7, 0, (struct sockaddr *)&addr,
                   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
            say("error-notify-sendto", errno);
        close(fd);
    }
    say("ready", t);
    for (;;)
        pause();
}

static int cmd_listen(int port, long delay_ms) {
    install_handlers();
    sleep_ms(delay_ms);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 128) < 0) {
        say("error-listen", errno);
        return 1;
    }
    say("ready", now_ns());
    for (;;) {
        int conn = accept(fd, NULL, NULL);
        if (conn >= 0)
            close(conn);
    }
}

static int cmd_launch(char **argv) {
    say("launch", now_ns());
    execvp(argv[0], argv);
    perror("helper launch: execvp");
    return 127;
}

static int cmd_runtime(char **argv) {
    long long t0 = now_ns();
    pid_t pid = fork();
    if (pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    say("runtime", now_ns() - t0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

/* How many processes other than ourselves are still children of PID 1. */
static int pid1_children_besides(pid_t self) {
    char buf[65536];
    FILE *f = fopen("/proc/1/task/1/children", "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    int count = 0;
    for (char *tok = strtok(buf, " \n"); tok != NULL; tok = strtok(NULL, " \n"))
        if (atoi(tok) != self)
            count++;
    return count;
}

static int count_zombies(void) {
    DIR *d = opendir("/proc");
    int zombies = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *paren = strrchr(buf, ')');  /* "PID (comm) STATE ..." */
        if (paren != NULL && paren[1] == ' ' && paren[2] == 'Z')
            zombies++;
    }
    if (d != NULL)
        closedir(d);
    return zombies;
}

static int cmd_orphans(int count, long timeout_ms) {
    int gate[2];
    if (pipe(gate) < 0)
        return 1;
    for (int i = 0; i < count; i++) {
        pid_t mid = fork();
        if (mid == 0) {
            if (fork() == 0) {
                /* The orphan: wait for the gate to close, then exit. */
                char c;
                close(gate[1]);
                while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
                }
                _exit(0);
            }
            _exit(0);  /* the middle process: its exit orphans the grandchild */
        }
        if (mid < 0) {
            say("error-fork", errno);
            return 1;
        }
        waitpid(mid, NULL, 0);
    }
    close(gate[0]);
    pid_t self = getpid();
    long long t0 = now_ns();
    close(gate[1]);  /* every orphan wakes and exits at once */
    long long deadline = t0 + timeout_ms * 1000000LL;
    long long done = 0;
    while (now_ns() < deadline) {
        if (pid1_children_besides(self) == 0) {
            done = now_ns();
            break;
        }
        struct timespec pause_ts = {0, 200000};  /* 0.2 ms between looks */
        nanosleep(&pause_ts, NULL);
    }
    if (done == 0)
        sleep_ms(50);  /* let stragglers finish exiting so they count as zombies */
    char buf[96];
    int n = snprintf(buf, sizeof buf, "orphans %lld %d\n", done ? done - t0 : -1LL,
                     count_zombies());
    (void)!write(1, buf, (size_t)n);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "stamp") == 0) {
        say("child", now_ns());
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "launch") == 0)
        return cmd_launch(argv + 2);
    if (argc >= 3 && strcmp(argv[1], "runtime") == 0)
        return cmd_runtime(argv + 2);
    if (argc >= 2 && strcmp(argv[1], "signals") == 0)
        cmd_signals();
    if (argc >= 3 && strcmp(argv[1], "notify") == 0)
        cmd_notify(atol(argv[2]));
    if (argc >= 4 && strcmp(argv[1], "listen") == 0)
        return cmd_listen(atoi(argv[2]), atol(argv[3]));
    if (argc >= 4 && strcmp(argv[1], "orphans") == 0)
        return cmd_orphans(atoi(argv[2]), atol(argv[3]));
    fprintf(stderr, "usage: helper stamp|launch|runtime|signals|notify|listen|orphans ...\n");
    return 2;
}
