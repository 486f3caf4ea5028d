// memory_common.h - resident-memory probes shared by the memory benchmarks.
#pragma once

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

namespace bench {

/// A field of /proc/self/status in KiB (VmRSS, VmHWM), or -1.
inline long statusKiB(const char *field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':')
      return std::stol(line.substr(n + 1));
  return -1;
}

/// Resets the peak resident size (VmHWM) to the current one (Linux >= 4.0).
inline bool resetPeak() {
  std::FILE *f = std::fopen("/proc/self/clear_refs", "w");
  if (!f)
    return false;
  bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
}

} // namespace bench
