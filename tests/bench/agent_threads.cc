/*
 * agent_threads.cc - the 16-thread C++ workload of tests/bench/compare.py
 * (issue 13's table, row "C++, 16 threads allocating (glibc)").
 *
 * --threads T threads (default 16) each run --rounds R rounds (default
 * 200) of ordinary container work on glibc's allocator through operator
 * new/delete: a std::map<std::string, std::vector<int>> filled with 256
 * entries (keys built with std::to_string and concatenation, vectors grown
 * by push_back), a std::vector<std::string> of the keys sorted, half the
 * map erased and the rest summed. Every round allocates and frees some
 * 2,000 blocks of 16..1,100 bytes, and each thread keeps the map of its
 * current round live, so the threads' allocations overlap in time and in
 * glibc's arenas. It links nothing of heapwatch (the agent, when wanted,
 * is preloaded). Prints one line with the checksum of all threads (the
 * same for every run with the same arguments), so a run that went wrong
 * shows.
 *
 * usage: agent_threads [--threads T] [--rounds R]
 */
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

uint64_t one_round(unsigned tid, unsigned round)
{
    std::map<std::string, std::vector<int>> m;
    for (unsigned i = 0; i < 256; i++) {
        std::string key = "t" + std::to_string(tid) + "/r" + std::to_string(round) +
                          "/k" + std::to_string(i * 2654435761u % 100000);
        std::vector<int> &v = m[key];
        unsigned n = 1 + (i * 7 + round) % 40;
        for (unsigned j = 0; j < n; j++)
            v.push_back(static_cast<int>(i ^ j));
    }
    std::vector<std::string> keys;
    for (const auto &kv : m)
        keys.push_back(kv.first + ":" + std::to_string(kv.second.size()));
    std::sort(keys.begin(), keys.end(),
              [](const std::string &a, const std::string &b) { return a.size() < b.size() || (a.size() == b.size() && a < b); });
    uint64_t sum = 0;
    unsigned i = 0;
    for (auto it = m.begin(); it != m.end(); i++) {
        if (i & 1) {
            it = m.erase(it);
        } else {
            for (int x : it->second)
                sum += static_cast<uint64_t>(x);
            ++it;
        }
    }
    for (const auto &k : keys)
        sum += k.size();
    return sum + m.size();
}

void worker(unsigned tid, unsigned rounds, uint64_t *out)
{
    uint64_t sum = 0;
    for (unsigned r = 0; r < rounds; r++)
        sum += one_round(tid, r);
    *out = sum;
}

unsigned arg_uint(const char *s, const char *name)
{
    char *end;
    unsigned long v = std::strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v == 0 || v > 1000000) {
        std::fprintf(stderr, "agent_threads: bad %s: %s\n", name, s);
        std::exit(2);
    }
    return static_cast<unsigned>(v);
}

} // namespace

int main(int argc, char **argv)
{
    unsigned threads = 16, rounds = 200;
    for (int i = 1; i < argc; i++) {
        if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = arg_uint(argv[++i], "--threads");
        } else if (std::strcmp(argv[i], "--rounds") == 0 && i + 1 < argc) {
            rounds = arg_uint(argv[++i], "--rounds");
        } else {
            std::fprintf(stderr, "usage: agent_threads [--threads T] [--rounds R]\n");
            return 2;
        }
    }
    std::vector<uint64_t> sums(threads);
    std::vector<std::thread> ts;
    for (unsigned t = 0; t < threads; t++)
        ts.emplace_back(worker, t, rounds, &sums[t]);
    for (auto &t : ts)
        t.join();
    uint64_t total = 0;
    for (uint64_t s : sums)
        total += s;
    std::printf("threads=%u rounds=%u checksum=%llu\n", threads, rounds,
                static_cast<unsigned long long>(total));
    return 0;
}
