/* A wall clock that jumps, for one process tree: LD_PRELOADed, it adds the offset (seconds,
 * a decimal number) held in the file $JUMPCLOCK_FILE, read at every call, to CLOCK_REALTIME
 * as clock_gettime, gettimeofday and time report it. Monotonic and boot-time clocks are left
 * alone, as a real wall-clock jump (NTP, a person, a VM resumed) leaves them.
 *
 * Why not libfaketime: 0.9.10 (Debian bookworm) fails Python's time.sleep with EINVAL when
 * monotonic time is not faked (FAKETIME_DONT_FAKE_MONOTONIC=1), and faking monotonic time
 * too would hide exactly the mistakes this is for. Built by tests/faults/kit.py with cc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int (*real_clock_gettime)(clockid_t, struct timespec *);

static long long offset_ns(void) {
    const char *path = getenv("JUMPCLOCK_FILE");
    char buf[64];
    ssize_t n;
    int fd;
    if (!path || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return 0;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    return (long long)(strtod(buf, NULL) * 1e9);
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    int r;
    if (!real_clock_gettime)
        real_clock_gettime = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    r = real_clock_gettime(id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        long long t = (long long)ts->tv_sec * 1000000000LL + ts->tv_nsec + offset_ns();
        ts->tv_sec = t / 1000000000LL;
        ts->tv_nsec = t % 1000000000LL;
    }
    return r;
}

int gettimeofday(struct timeval *tv, void *tz) {
    struct timespec ts;
    (void)tz;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (tv) {
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return 0;
}

time_t time(time_t *out) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (out)
        *out = ts.tv_sec;
    return ts.tv_sec;
}
