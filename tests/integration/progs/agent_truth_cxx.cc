// agent_truth_cxx.cc - C++ operator new and delete reach the agent through
// libstdc++'s calls to malloc and free: the agent counts every one, and
// nothing else, in each phase (see agent_truth.c for the method).
#include <dlfcn.h>
#include <malloc.h>
#include <cstdio>
#include <new>

#include "agent/agent.h"

namespace {

using reader_t = void (*)(heapwatch_counters_t *);
reader_t read_counters;
int failures;

struct Node {
    Node *next;
    long payload[5];
};

struct alignas(64) Aligned {
    char bytes[200];
};

class Phase {
public:
    explicit Phase(const char *name) : name_(name) { read_counters(&before_); }
    void expect(long mallocs, long frees) {
        heapwatch_counters_t now;
        read_counters(&now);
        long m = static_cast<long>(now.mallocs - before_.mallocs);
        long f = static_cast<long>(now.frees - before_.frees);
        bool ok = m == mallocs && f == frees;
        failures += !ok;
        std::printf("%s - %s: mallocs %ld/%ld frees %ld/%ld\n", ok ? "ok" : "not ok", name_, m,
                    mallocs, f, frees);
    }

private:
    const char *name_;
    heapwatch_counters_t before_;
};

}  // namespace

int main() {
    read_counters = reinterpret_cast<reader_t>(dlsym(RTLD_DEFAULT, "heapwatch_read_counters"));
    std::printf("# agent_truth_cxx: operator new/delete\n");
    std::fflush(stdout);
    if (!read_counters) return 77;
    {
        Phase p("new and delete of 1000 nodes");
        Node *head = nullptr;
        for (int i = 0; i < 1000; i++) head = new Node{head, {i}};
        while (head) {
            Node *next = head->next;
            delete head;
            head = next;
        }
        p.expect(1000, 1000);
    }
    {
        Phase p("new[] and delete[]");
        for (int i = 1; i <= 100; i++) delete[] new int[static_cast<size_t>(i) * 10];
        p.expect(100, 100);
    }
    {
        Phase p("nothrow new and aligned new");
        for (int i = 0; i < 50; i++) delete new (std::nothrow) Node();
        for (int i = 0; i < 50; i++) delete new Aligned();
        p.expect(100, 100);
    }
    {
        Phase p("a failed new throws and counts nothing");
        try {
            char *huge = new char[static_cast<size_t>(1) << 62];
            delete[] huge;
            failures++;
        } catch (const std::bad_alloc &) {
        }
        // The huge new[] fails (not counted); the throw allocates the
        // exception object with malloc and the catch frees it.
        p.expect(1, 1);
    }
    return failures ? 1 : 0;
}
