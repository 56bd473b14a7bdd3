// pprof_sites_cxx.cc - a C++ method with a known allocation site; pprof
// must show it as hwtest::Widget::grow(unsigned long) (demangled by the
// agent's symbolizer; the system name stays mangled).
#include "pprof_sites.h"

namespace hwtest {

class Widget {
public:
    explicit Widget(int k) : k_(k) {}
    void *grow(size_t n);
private:
    int k_;
};

__attribute__((noinline)) void *Widget::grow(size_t n)
{
    void *p = sites_alloc(n + (size_t)k_ * 0);
    __asm__ volatile("" ::: "memory");
    return p;
}

}  // namespace hwtest

extern "C" void *sites_cxx_alloc(size_t n)
{
    hwtest::Widget w(1);
    return w.grow(n);
}
