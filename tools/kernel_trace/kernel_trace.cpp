// A CUPTI injection library that records every kernel's start and end on the
// GPU, graph nodes included (the device image has no Nsight Systems; ncu
// times kernels one by one, serialized, which hides the gaps between them).
//
//   g++ -O2 -shared -fPIC -I/usr/local/cuda/include tools/kernel_trace/kernel_trace.cpp \
//       -L/usr/local/cuda/lib -lcupti -o build/libkernel_trace.so
//   CUDA_INJECTION64_PATH=$PWD/build/libkernel_trace.so KERNEL_TRACE_FILE=/tmp/k.csv umi bench ...
//   python3 tools/kernel_trace/summarize.py /tmp/k.csv
//
// Each line of the CSV: start_ns,end_ns,graph_id,grid_blocks,block_threads,name
// (names demangled and cut to their function part); CUDA runtime calls on
// the host as start_ns,end_ns,0,-1,0,rt:NAME on the same clock. The CUDA runtime loads
// the library through CUDA_INJECTION64_PATH and calls InitializeInjection;
// records are written when CUPTI hands back a full buffer and at exit.
#include <cupti.h>
#include <cxxabi.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>

namespace {

struct Trace {
  FILE* out = nullptr;
  std::mutex mutex;
  std::unordered_map<const char*, std::string> names;  // CUPTI keeps name strings alive
};

Trace& trace() {
  static Trace t;  // the injection entry point has no other place to keep its state
  return t;
}

std::string short_name(const char* mangled) {
  int status = 0;
  char* d = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
  std::string s = status == 0 && d ? d : mangled;
  std::free(d);
  // "void umi::cuda::(anonymous namespace)::f<...>(args)": keep "f<...>" and drop the return type and arguments.
  int depth = 0;
  size_t args = std::string::npos;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '<') ++depth;
    else if (s[i] == '>') --depth;
    else if (s[i] == '(' && depth == 0 && i > 0 && s.compare(i, 11, "(anonymous ") != 0) { args = i; break; }
  }
  if (args != std::string::npos) s.resize(args);
  for (const char* ns : {"umi::cuda::(anonymous namespace)::", "umi::cuda::", "(anonymous namespace)::"})
    for (size_t p; (p = s.find(ns)) != std::string::npos;) s.erase(p, std::strlen(ns));
  if (s.compare(0, 5, "void ") == 0) s.erase(0, 5);
  for (char& c : s)
    if (c == ',') c = ';';
  return s;
}

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *size = 8 << 20;
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, *size));
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  Trace& t = trace();
  std::lock_guard<std::mutex> lock(t.mutex);
  CUpti_Activity* record = nullptr;
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind == CUPTI_ACTIVITY_KIND_RUNTIME) {
      const auto* a = reinterpret_cast<const CUpti_ActivityAPI*>(record);
      const char* name = nullptr;
      if (cuptiGetCallbackName(CUPTI_CB_DOMAIN_RUNTIME_API, a->cbid, &name) != CUPTI_SUCCESS || !name) name = "?";
      if (t.out)
        std::fprintf(t.out, "%llu,%llu,0,-1,0,rt:%s\n", static_cast<unsigned long long>(a->start),
                     static_cast<unsigned long long>(a->end), name);
      continue;
    }
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && record->kind != CUPTI_ACTIVITY_KIND_KERNEL) continue;
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
    auto it = t.names.find(k->name);
    if (it == t.names.end()) it = t.names.emplace(k->name, short_name(k->name)).first;
    if (t.out)
      std::fprintf(t.out, "%llu,%llu,%u,%lld,%d,%s\n", static_cast<unsigned long long>(k->start),
                   static_cast<unsigned long long>(k->end), k->graphId,
                   static_cast<long long>(k->gridX) * k->gridY * k->gridZ, k->blockX * k->blockY * k->blockZ,
                   it->second.c_str());
  }
  std::free(buffer);
}

void finish() {
  cuptiActivityFlushAll(1);
  Trace& t = trace();
  std::lock_guard<std::mutex> lock(t.mutex);
  if (t.out) std::fclose(t.out);
  t.out = nullptr;
}

}  // namespace

extern "C" int InitializeInjection() {
  const char* path = std::getenv("KERNEL_TRACE_FILE");
  trace().out = std::fopen(path ? path : "kernel_trace.csv", "w");
  if (!trace().out) {
    std::fprintf(stderr, "kernel_trace: cannot write %s\n", path ? path : "kernel_trace.csv");
    return 0;
  }
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_RUNTIME) != CUPTI_SUCCESS) {
    std::fprintf(stderr, "kernel_trace: CUPTI refused the kernel activity\n");
    return 0;
  }
  std::atexit(finish);
  return 1;
}
