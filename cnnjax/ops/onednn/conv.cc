// oneDNN convolutions (forward, backward-data, backward-weights) as XLA typed-FFI handlers.
//
// Layouts are cnnjax's: activations channels-last (N, *spatial, C), kernels Flax/TF
// (*kernel, in_ch // groups, out_ch), float32, 1 to 3 spatial dims. Activations are given to
// oneDNN in place (strided memory descriptors); kernels are reordered to the layout the
// primitive asks for (weights are small next to activations). Primitives and reorders are
// built once per (op, shape, attributes) and cached for the life of the process. Scratchpads
// are user-managed, per calling thread. Calls are serialised by one mutex: each call already
// runs on all the cores oneDNN's OpenMP team may use, and XLA may issue independent
// convolutions (a conv's two gradients) from two of its threads at once, which would start two
// OpenMP teams on the same cores.
//
// Attributes (int64): strides, dilation (1 = dense), pad_lo, pad_hi (one per spatial dim),
// groups.

#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using Dims = memory::dims;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

Dims ToDims(ffi::Span<const int64_t> s) { return Dims(s.begin(), s.end()); }

// Channels-last (N, *S, C) as oneDNN's logical (N, C, *S) with explicit strides.
memory::desc ActDesc(const Dims& shape) {
  const size_t nd = shape.size() - 2;
  Dims dims = {shape[0], shape[nd + 1]};
  Dims strides(nd + 2);
  int64_t stride = shape[nd + 1];
  for (size_t i = nd; i >= 1; --i) {
    strides[i + 1] = stride;
    stride *= shape[i];
  }
  strides[0] = stride;
  strides[1] = 1;
  for (size_t i = 1; i <= nd; ++i) dims.push_back(shape[i]);
  return memory::desc(dims, memory::data_type::f32, strides);
}

// Flax kernel (*K, I/g, O) as oneDNN's logical (O, I, *K), or (g, O/g, I/g, *K) for groups.
memory::desc WeiDesc(const Dims& shape, int64_t groups) {
  const size_t nd = shape.size() - 2;
  const int64_t sub_in = shape[nd], out = shape[nd + 1];
  Dims kstrides(nd);
  int64_t stride = sub_in * out;
  for (size_t i = nd; i-- > 0;) {
    kstrides[i] = stride;
    stride *= shape[i];
  }
  Dims dims, strides;
  if (groups > 1) {
    dims = {groups, out / groups, sub_in};
    strides = {out / groups, 1, out};
  } else {
    dims = {out, sub_in};
    strides = {1, out};
  }
  for (size_t i = 0; i < nd; ++i) {
    dims.push_back(shape[i]);
    strides.push_back(kstrides[i]);
  }
  return memory::desc(dims, memory::data_type::f32, strides);
}

memory::desc AnyLike(const memory::desc& md) {
  return memory::desc(md.get_dims(), memory::data_type::f32, memory::format_tag::any);
}

struct Geometry {
  Dims src, wei, dst;  // cnnjax shapes
  Dims strides, dilates, pad_lo, pad_hi;  // oneDNN dilation = cnnjax dilation - 1
  int64_t groups;

  std::string Key(char op) const {
    std::string key(1, op);
    for (const Dims* d : {&src, &wei, &dst, &strides, &dilates, &pad_lo, &pad_hi}) {
      for (int64_t v : *d) key += std::to_string(v) + ",";
      key += ";";
    }
    return key + std::to_string(groups);
  }

  dnnl::convolution_forward::primitive_desc ForwardPd() const {
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    return dnnl::convolution_forward::primitive_desc(
        Engine(), dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
        ActDesc(src), AnyLike(WeiDesc(wei, groups)), ActDesc(dst), strides, dilates, pad_lo,
        pad_hi, attr);
  }
};

Geometry MakeGeometry(const Dims& src, const Dims& wei, const Dims& dst,
                      ffi::Span<const int64_t> strides, ffi::Span<const int64_t> dilation,
                      ffi::Span<const int64_t> pad_lo, ffi::Span<const int64_t> pad_hi,
                      int64_t groups) {
  Geometry g{src, wei, dst, ToDims(strides), ToDims(dilation), ToDims(pad_lo), ToDims(pad_hi),
             groups};
  for (auto& d : g.dilates) d -= 1;
  return g;
}

// One cached convolution: the primitive, the kernel's user and primitive layouts.
struct Entry {
  dnnl::primitive prim;
  memory::desc user_wei, prim_wei, scratch;
  bool reorder = false;
  dnnl::reorder wei_reorder;  // user -> primitive (fwd, bwd data) or back (bwd weights)
};

template <class Make>
std::shared_ptr<Entry> Cached(const std::string& key, Make make) {
  static std::mutex mu;
  static std::unordered_map<std::string, std::shared_ptr<Entry>> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  auto entry = std::make_shared<Entry>(make());
  std::lock_guard<std::mutex> lock(mu);
  return cache.emplace(key, entry).first->second;
}

template <class Pd>
Entry MakeEntry(const dnnl::primitive& prim, const Pd& pd, const memory::desc& user_wei,
                const memory::desc& prim_wei, bool to_user) {
  Entry e{prim, user_wei, prim_wei, pd.scratchpad_desc()};
  e.reorder = user_wei != prim_wei;
  if (e.reorder) {
    e.wei_reorder = to_user ? dnnl::reorder(memory(prim_wei, Engine()), memory(user_wei, Engine()))
                            : dnnl::reorder(memory(user_wei, Engine()), memory(prim_wei, Engine()));
  }
  return e;
}

// Per-thread growable buffers: 0 = scratchpad, 1 = kernel in the primitive's layout.
void* Buffer(int which, size_t bytes) {
  thread_local std::vector<char> buffers[2];
  auto& b = buffers[which];
  if (b.size() < bytes) b.resize(bytes);
  return b.data();
}

dnnl::stream& Stream() {
  thread_local dnnl::stream stream(Engine());
  return stream;
}

ffi::Error Run(const Entry& e, std::unordered_map<int, memory> args, int wei_arg,
               void* user_wei_ptr, bool wei_is_output) {
  static std::mutex run_mu;
  std::lock_guard<std::mutex> lock(run_mu);
  auto& stream = Stream();
  memory user_wei(e.user_wei, Engine(), user_wei_ptr);
  memory prim_wei = user_wei;
  if (e.reorder) {
    prim_wei = memory(e.prim_wei, Engine(), Buffer(1, e.prim_wei.get_size()));
    if (!wei_is_output) e.wei_reorder.execute(stream, user_wei, prim_wei);
  }
  args[wei_arg] = prim_wei;
  args[DNNL_ARG_SCRATCHPAD] = memory(e.scratch, Engine(), Buffer(0, e.scratch.get_size()));
  e.prim.execute(stream, args);
  if (e.reorder && wei_is_output) e.wei_reorder.execute(stream, prim_wei, user_wei);
  stream.wait();
  return ffi::Error::Success();
}

template <class Fn>
ffi::Error Guarded(Fn fn) {
  try {
    return fn();
  } catch (const std::exception& err) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN conv: ") + err.what());
  }
}

Dims ShapeOf(ffi::Span<const int64_t> d) { return Dims(d.begin(), d.end()); }

ffi::Error ForwardImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                       ffi::ResultBuffer<ffi::F32> y, ffi::Span<const int64_t> strides,
                       ffi::Span<const int64_t> dilation, ffi::Span<const int64_t> pad_lo,
                       ffi::Span<const int64_t> pad_hi, int64_t groups) {
  return Guarded([&] {
    Geometry g = MakeGeometry(ShapeOf(x.dimensions()), ShapeOf(w.dimensions()),
                              ShapeOf(y->dimensions()), strides, dilation, pad_lo, pad_hi, groups);
    auto e = Cached(g.Key('f'), [&] {
      auto pd = g.ForwardPd();
      return MakeEntry(dnnl::convolution_forward(pd), pd, WeiDesc(g.wei, groups),
                       pd.weights_desc(), false);
    });
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, memory(ActDesc(g.src), Engine(), x.typed_data())},
        {DNNL_ARG_DST, memory(ActDesc(g.dst), Engine(), y->typed_data())}};
    return Run(*e, args, DNNL_ARG_WEIGHTS, w.typed_data(), false);
  });
}

// dx = backward_data(dy, w); x's shape is the result's.
ffi::Error BackwardDataImpl(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> w,
                            ffi::ResultBuffer<ffi::F32> dx, ffi::Span<const int64_t> strides,
                            ffi::Span<const int64_t> dilation, ffi::Span<const int64_t> pad_lo,
                            ffi::Span<const int64_t> pad_hi, int64_t groups) {
  return Guarded([&] {
    Geometry g = MakeGeometry(ShapeOf(dx->dimensions()), ShapeOf(w.dimensions()),
                              ShapeOf(dy.dimensions()), strides, dilation, pad_lo, pad_hi, groups);
    auto e = Cached(g.Key('d'), [&] {
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      dnnl::convolution_backward_data::primitive_desc pd(
          Engine(), dnnl::algorithm::convolution_direct, ActDesc(g.src),
          AnyLike(WeiDesc(g.wei, groups)), ActDesc(g.dst), g.strides, g.dilates, g.pad_lo,
          g.pad_hi, g.ForwardPd(), attr);
      return MakeEntry(dnnl::convolution_backward_data(pd), pd, WeiDesc(g.wei, groups),
                       pd.weights_desc(), false);
    });
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_DIFF_DST, memory(ActDesc(g.dst), Engine(), dy.typed_data())},
        {DNNL_ARG_DIFF_SRC, memory(ActDesc(g.src), Engine(), dx->typed_data())}};
    return Run(*e, args, DNNL_ARG_WEIGHTS, w.typed_data(), false);
  });
}

// dw = backward_weights(x, dy); the kernel's shape is the result's.
ffi::Error BackwardWeightsImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                               ffi::ResultBuffer<ffi::F32> dw, ffi::Span<const int64_t> strides,
                               ffi::Span<const int64_t> dilation, ffi::Span<const int64_t> pad_lo,
                               ffi::Span<const int64_t> pad_hi, int64_t groups) {
  return Guarded([&] {
    Geometry g = MakeGeometry(ShapeOf(x.dimensions()), ShapeOf(dw->dimensions()),
                              ShapeOf(dy.dimensions()), strides, dilation, pad_lo, pad_hi, groups);
    auto e = Cached(g.Key('w'), [&] {
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      dnnl::convolution_backward_weights::primitive_desc pd(
          Engine(), dnnl::algorithm::convolution_direct, ActDesc(g.src),
          AnyLike(WeiDesc(g.wei, groups)), ActDesc(g.dst), g.strides, g.dilates, g.pad_lo,
          g.pad_hi, g.ForwardPd(), attr);
      return MakeEntry(dnnl::convolution_backward_weights(pd), pd, WeiDesc(g.wei, groups),
                       pd.diff_weights_desc(), true);
    });
    std::unordered_map<int, memory> args = {
        {DNNL_ARG_SRC, memory(ActDesc(g.src), Engine(), x.typed_data())},
        {DNNL_ARG_DIFF_DST, memory(ActDesc(g.dst), Engine(), dy.typed_data())}};
    return Run(*e, args, DNNL_ARG_DIFF_WEIGHTS, dw->typed_data(), true);
  });
}

}  // namespace

#define CNNJAX_CONV_ATTRS                         \
  .Attr<ffi::Span<const int64_t>>("strides")      \
      .Attr<ffi::Span<const int64_t>>("dilation") \
      .Attr<ffi::Span<const int64_t>>("pad_lo")   \
      .Attr<ffi::Span<const int64_t>>("pad_hi")   \
      .Attr<int64_t>("groups")

XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnjaxOnednnConvForward, ForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() CNNJAX_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnjaxOnednnConvBackwardData, BackwardDataImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() CNNJAX_CONV_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(CnnjaxOnednnConvBackwardWeights, BackwardWeightsImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() CNNJAX_CONV_ATTRS);
