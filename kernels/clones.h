/* SN_CLONES: compile a hot loop once per instruction set (AVX-512, AVX2,
 * baseline), the loader picking the best the CPU has, so the extension
 * stays portable where Numba compiles for the host. Needs an ifunc: gcc >= 6
 * or clang >= 14, x86-64 with glibc (musl has none); elsewhere one plain
 * build. -ffp-contract=off holds in every clone: no FMA, so every clone
 * gives the same IEEE results. SN_NO_CLONES (CMake's SCRATCHNET_ISA other
 * than "clones") compiles each loop once, for the flags of the build. */
#ifndef SCRATCHNET_CLONES_H
#define SCRATCHNET_CLONES_H

#if !defined(SN_NO_CLONES) && defined(__x86_64__) && defined(__ELF__) && defined(__GLIBC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define SN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef SN_CLONES
#define SN_CLONES
#endif

#endif
