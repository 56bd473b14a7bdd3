/*
 * report_assets.c - the page's style and script, tools/report_page.css
 * and tools/report_page.js, embedded in the tool (report_assets.h).
 *
 * They are files of their own so that they read, diff and check as what
 * they are (the tests run `node --check` on the script), where a C string
 * hid them behind quotes and escapes. The assembler's .incbin copies each
 * in at build time, followed by a NUL; the file names are relative to the
 * repository's root, which tools.mk hands the assembler (-Wa,-I), and
 * tools.mk makes this object depend on both files.
 */
#include "tools/report_assets.h"

#define EMBED(symbol, file)                                  \
    ".section .rodata\n"                                     \
    ".globl " symbol "\n"                                    \
    ".hidden " symbol "\n"                                   \
    ".type " symbol ", @object\n"                            \
    ".balign 16\n" symbol ":\n"                              \
    ".incbin \"" file "\"\n"                                 \
    ".byte 0\n"                                              \
    ".size " symbol ", . - " symbol "\n"                     \
    ".previous\n"

__asm__(EMBED("report_page_css", "tools/report_page.css"));
__asm__(EMBED("report_page_js", "tools/report_page.js"));
