/*
 * The spawn bound: how fast this machine can run one plugin process per job.
 *
 *   spawner ENTRYPOINT CWD REQUEST_FILE PARALLEL TOTAL
 *
 * Runs TOTAL jobs, PARALLEL at a time, each the way the daemon runs a job: spawn
 * ENTRYPOINT in a new session with CWD as working directory, write the request on
 * its stdin and close it, read stdout and stderr to EOF, reap it.  Nothing else:
 * no store, no scheduling, no parsing.  Prints one line:
 *
 *   jobs=TOTAL parallel=PARALLEL seconds=S jobs_per_s=R failures=F
 *
 * One worker process per parallel slot, each running its share in a loop, keeps
 * the loop itself free of any event machinery.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc(n > 0 ? n : 1);
    if (fread(buf, 1, n, f) != (size_t)n) { perror(path); exit(2); }
    fclose(f);
    *len = n;
    return buf;
}

/* One job; returns 0 when the plugin answered something on stdout and exited 0. */
static int run_one(const char *entrypoint, const char *request, size_t request_len) {
    int in[2], out[2], err[2];
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) {
        perror("pipe2");
        exit(2);
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
    char *argv[] = {(char *)entrypoint, NULL};
    pid_t pid;
    int rc = posix_spawn(&pid, entrypoint, &actions, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (rc != 0) {
        fprintf(stderr, "posix_spawn: %s\n", strerror(rc));
        exit(2);
    }
    size_t written = 0;
    while (written < request_len) {
        ssize_t n = write(in[1], request + written, request_len - written);
        if (n < 0) { if (errno == EINTR) continue; break; }
        written += (size_t)n;
    }
    close(in[1]);
    /* Drain both pipes to EOF, as the daemon does, so neither can fill and block. */
    struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
    int open_fds = 2;
    size_t got = 0;
    char buf[65536];
    while (open_fds > 0) {
        if (poll(fds, 2, -1) < 0) { if (errno == EINTR) continue; perror("poll"); exit(2); }
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            } else if (i == 0) {
                got += (size_t)n;
            }
        }
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return (got > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0) ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s ENTRYPOINT CWD REQUEST_FILE PARALLEL TOTAL\n", argv[0]);
        return 2;
    }
    /* Resolved before chdir, so a relative ENTRYPOINT still names the same file. */
    char *entrypoint = realpath(argv[1], NULL);
    if (!entrypoint) { perror(argv[1]); return 2; }
    int parallel = atoi(argv[4]);
    int total = atoi(argv[5]);
    if (parallel < 1 || total < parallel) {
        fprintf(stderr, "need PARALLEL >= 1 and TOTAL >= PARALLEL\n");
        return 2;
    }
    size_t request_len;
    char *request = read_file(argv[3], &request_len);
    if (chdir(argv[2]) != 0) { perror(argv[2]); return 2; }

    /* Failures travel back through one pipe, one byte per failed job. */
    int report[2];
    if (pipe(report)) { perror("pipe"); return 2; }
    double started = now();
    for (int w = 0; w < parallel; w++) {
        int share = total / parallel + (w < total % parallel ? 1 : 0);
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 2; }
        if (pid == 0) {
            close(report[0]);
            for (int j = 0; j < share; j++) {
                if (run_one(entrypoint, request, request_len) != 0) {
                    if (write(report[1], "x", 1) < 0) {}
                }
            }
            _exit(0);
        }
    }
    close(report[1]);
    int failures = 0;
    char c;
    while (read(report[0], &c, 1) == 1) failures++;
    int status, broken = 0;
    while (wait(&status) > 0) {
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) broken = 1;
    }
    if (broken) { fprintf(stderr, "a worker failed; no figure\n"); return 2; }
    double seconds = now() - started;
    printf("jobs=%d parallel=%d seconds=%.4f jobs_per_s=%.1f failures=%d\n",
           total, parallel, seconds, total / seconds, failures);
    return failures ? 1 : 0;
}
