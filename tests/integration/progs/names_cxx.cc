/*
 * names_cxx.cc - C++ allocation sites for tests/integration/names.sh: the
 * profile's and the alert's names must be demangled.
 *
 *   names_cxx hold            names::Pool::hold(unsigned long) keeps 256
 *                             blocks of 64 KiB made with new[]
 *   names_cxx grow RATE SECS  names::Pool::grow(unsigned long) leaks RATE
 *                             512-byte nodes a second through operator new
 *                             for SECS seconds (an alert)
 *   names_cxx altexit KIB     hold(16), then exit(0) from a SIGUSR1 handler
 *                             running on a sigaltstack of KIB KiB (a guard
 *                             page below it): the exit output must not
 *                             overflow it
 */
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>
#include <sys/mman.h>

#define NOINLINE __attribute__((noinline))

namespace names {

struct Node {
    Node *next;
    char pad[504];
};

class Pool {
public:
    NOINLINE void hold(unsigned long n)
    {
        for (unsigned long i = 0; i < n; i++) {
            char *p = new char[64 * 1024];
            std::memset(p, 1, 64);
            kept_.push_back(p);
        }
    }
    NOINLINE void grow(unsigned long n)
    {
        for (unsigned long i = 0; i < n; i++) {
            Node *node = new Node;
            node->next = chain_;
            chain_ = node;
        }
    }

private:
    std::vector<char *> kept_;
    Node *chain_ = nullptr;
};

}  // namespace names

static void exit_now(int) { std::exit(0); }

static double now()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    static names::Pool pool;
    if (argc >= 2 && std::strcmp(argv[1], "hold") == 0) {
        pool.hold(256);
        std::printf("held 256 blocks\n");
        return 0;
    }
    if (argc >= 4 && std::strcmp(argv[1], "grow") == 0) {
        double rate = std::atof(argv[2]), secs = std::atof(argv[3]), start = now();
        long done = 0;
        for (;;) {
            double t = now() - start;
            if (t >= secs) break;
            long want = (long)(t * rate);
            if (want > done) pool.grow((unsigned long)(want - done));
            done = want > done ? want : done;
            timespec ts = { 0, 10 * 1000 * 1000 };
            nanosleep(&ts, nullptr);
        }
        std::printf("leaked %ld nodes\n", done);
        return 0;
    }
    if (argc >= 3 && std::strcmp(argv[1], "altexit") == 0) {
        pool.hold(16);
        size_t size = (size_t)std::atoi(argv[2]) * 1024, page = 4096;
        char *m = (char *)mmap(nullptr, size + page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED || mprotect(m, page, PROT_NONE) != 0) return 2;
        stack_t ss = {};
        ss.ss_sp = m + page;
        ss.ss_size = size;
        struct sigaction sa = {};
        sa.sa_handler = exit_now;
        sa.sa_flags = SA_ONSTACK;
        if (sigaltstack(&ss, nullptr) != 0 || sigaction(SIGUSR1, &sa, nullptr) != 0) return 2;
        raise(SIGUSR1);
        return 3;   /* not reached */
    }
    std::fprintf(stderr, "usage: names_cxx hold | grow RATE SECS | altexit KIB\n");
    return 2;
}
