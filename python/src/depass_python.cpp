// The `depass` Python module (pybind11): the C++ API with NumPy arrays in and out, and
// nothing of its own maths. Every number comes from depass::Model / depass::Decomposer and
// the methods of methods/ (Methods.hpp);
// this file converts arguments, releases the GIL while the engine runs, lets Ctrl-C stop a
// run between blocks, and maps C++ exceptions to Python ones with the same messages.

#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <depass/Version.hpp>
#include <depass/depass.hpp>
#include <depass/io/LoadModel.hpp>

namespace py = pybind11;

namespace depass {
namespace python {

// ---------------------------------------------------------------------------------------
// Boundaries and initialisations (plain data; the numbers are converted per precision)
// ---------------------------------------------------------------------------------------

/// "output", "before_attention L" or "before_mlp L" (a space or "_" between the words, as
/// Boundary::to_string prints them or as the goldens spell them).
inline Boundary parse_boundary(const std::string& text) {
  std::string s = text;
  for (char& c : s)
    if (c == '_') c = ' ';
  if (s == "output") return Boundary::output();
  for (const auto& [prefix, site] : {std::pair<std::string, Site>{"before attention ", Site::Attention},
                                     std::pair<std::string, Site>{"before mlp ", Site::Mlp}}) {
    if (s.rfind(prefix, 0) != 0) continue;
    const std::string number = s.substr(prefix.size());
    if (!number.empty() && number.find_first_not_of("0123456789") == std::string::npos && number.size() < 9)
      return Boundary{std::stoi(number), site, false};
  }
  throw std::invalid_argument("boundary '" + text +
                              "' is not understood (allowed: 'output', 'before_attention L', 'before_mlp L')");
}

/// A depass.Boundary, or its text (parse_boundary): a bad text is a ValueError naming it.
inline Boundary to_boundary(const py::handle& value, const char* what) {
  if (py::isinstance<Boundary>(value)) return value.cast<Boundary>();
  if (py::isinstance<py::str>(value)) return parse_boundary(value.cast<std::string>());
  throw py::type_error(std::string(what) + " must be a depass.Boundary or a str such as 'before_mlp 1', got " +
                       std::string(py::str(value.get_type().attr("__name__"))));
}

inline Site parse_site(const std::string& name) {
  if (name == "attention") return Site::Attention;
  if (name == "mlp") return Site::Mlp;
  throw std::invalid_argument("site '" + name + "' is unknown (allowed: attention, mlp)");
}

/// What depass.Tokens() / Heads() / ... describe: an Initialisation without its scalars.
struct InitSpec {
  InitKind kind = InitKind::Token;
  Boundary start = Boundary::before_attention(0);
  int layer = 0;
  Site site = Site::Attention;
  std::vector<int> neurons;
  std::vector<py::array> bases;  // subspaces: D x k bases or D x D projections
  bool projections = false;
  py::array custom;              // custom: M x N x D
  std::vector<std::string> labels;
};

inline std::string init_repr(const InitSpec& s) {
  switch (s.kind) {
    case InitKind::Token: return "Tokens(start='" + s.start.to_string() + "')";
    case InitKind::Module:
      return std::string("Module(") + std::to_string(s.layer) + ", '" + (s.site == Site::Mlp ? "mlp" : "attention") + "')";
    case InitKind::Head: return "Heads(" + std::to_string(s.layer) + ")";
    case InitKind::Neuron: return "Neurons(" + std::to_string(s.layer) + ", " + std::to_string(s.neurons.size()) + " ids)";
    case InitKind::Subspace: return "Subspaces('" + s.start.to_string() + "', " + std::to_string(s.bases.size()) + " bases)";
    case InitKind::Custom: return "Custom('" + s.start.to_string() + "')";
  }
  return "?";
}

template <typename Scalar>
Matrix<Scalar> to_matrix(const py::array& a, const std::string& name) {
  if (a.ndim() != 2)
    throw std::invalid_argument(name + " must be a 2-D array (D x k), got " + std::to_string(a.ndim()) + " dimensions");
  const auto c = py::array_t<Scalar, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!c) throw std::invalid_argument(name + " must be an array of numbers");
  return Eigen::Map<const RowMatrix<Scalar>>(c.data(), c.shape(0), c.shape(1));
}

template <typename Scalar>
ComponentTensor<Scalar> to_tensor(const py::array& a) {
  if (a.ndim() != 3)
    throw std::invalid_argument("custom components must be a 3-D array (M x N x D), got " + std::to_string(a.ndim()) +
                                " dimensions");
  const auto c = py::array_t<Scalar, py::array::c_style | py::array::forcecast>::ensure(a);
  if (!c) throw std::invalid_argument("custom components must be an array of numbers");
  const Eigen::Index M = c.shape(0), N = c.shape(1), D = c.shape(2);
  if (N == 0) throw std::invalid_argument("custom components must cover at least one position");
  RowMatrix<Scalar> stacked = Eigen::Map<const RowMatrix<Scalar>>(c.data(), M * N, D);
  return ComponentTensor<Scalar>(std::move(stacked), N);
}

template <typename Scalar>
Initialisation<Scalar> to_initialisation(const InitSpec& s) {
  switch (s.kind) {
    case InitKind::Token: return Initialisation<Scalar>::tokens(s.start);
    case InitKind::Module: return Initialisation<Scalar>::module_output(s.layer, s.site);
    case InitKind::Head: return Initialisation<Scalar>::heads(s.layer);
    case InitKind::Neuron: return Initialisation<Scalar>::neuron_outputs(s.layer, s.neurons);
    case InitKind::Subspace: {
      std::vector<Matrix<Scalar>> bases;
      for (std::size_t i = 0; i < s.bases.size(); ++i)
        bases.push_back(to_matrix<Scalar>(s.bases[i], "basis " + std::to_string(i)));
      return Initialisation<Scalar>::subspaces(s.start, std::move(bases), s.projections);
    }
    case InitKind::Custom: return Initialisation<Scalar>::custom_components(s.start, to_tensor<Scalar>(s.custom), s.labels);
  }
  throw std::logic_error("unknown initialisation kind");
}

// ---------------------------------------------------------------------------------------
// Ctrl-C: the engine's hook sees every residual-stream event (one per block); there the
// Python signal handlers run, and a KeyboardInterrupt they raise unwinds the run.
// ---------------------------------------------------------------------------------------

// An optional Python callable `progress(name, layer, boundary)` is called there too (with
// the GIL); an exception it raises stops the run the same way.
// `progress` is borrowed (the caller's argument outlives the run), so copying the hook
// without the GIL touches no reference count.
template <typename Scalar>
Hook<Scalar> interrupt_hook(py::handle progress = py::none()) {
  PyObject* callable = progress.is_none() ? nullptr : progress.ptr();
  return [callable](const HookEvent<Scalar>& e) {
    if (e.boundary < 0) return;
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
    if (callable) {
      const py::handle progress_fn(callable);
      progress_fn(e.name, e.layer, e.boundary);
    }
  };
}

inline void check_signals() {
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
}

// ---------------------------------------------------------------------------------------
// Arrays that view C++ memory: no copy, read-only, the owner kept alive through `base`
// ---------------------------------------------------------------------------------------

template <typename Scalar>
py::array readonly_view(std::vector<py::ssize_t> shape, std::vector<py::ssize_t> strides, const Scalar* data,
                        py::handle owner) {
  py::array a(py::dtype::of<Scalar>(), std::move(shape), std::move(strides), data, owner);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

// ---------------------------------------------------------------------------------------
// Model and Decomposition, one class pair per precision
// ---------------------------------------------------------------------------------------

template <typename Scalar>
struct PyModel {
  std::shared_ptr<const io::LoadedModel<Scalar>> loaded;

  const Model<Scalar>& model() const { return loaded->model; }
  const Tokenizer& tokenizer(const char* what) const {
    if (!loaded->tokenizer)
      throw std::invalid_argument(std::string(what) +
                                  " needs a tokenizer, and none was given or found next to the model "
                                  "(depass.load(path, tokenizer=...)); pass token ids instead");
    return *loaded->tokenizer;
  }
  /// Token ids of a prompt: text (encoded with BOS) or a sequence of ids.
  std::vector<int> ids(const py::object& prompt) const {
    if (py::isinstance<py::str>(prompt)) return tokenizer("a text prompt").encode(prompt.cast<std::string>(), true);
    try {
      return prompt.cast<std::vector<int>>();
    } catch (const py::cast_error&) {
      throw py::type_error("prompt must be a str or a sequence of token ids, got " +
                           std::string(py::str(prompt.get_type().attr("__name__"))));
    }
  }
};

/// LogitTrace's record of a run (decompose(..., trace=(position, target[, foil]))).
template <typename Scalar>
struct TraceRecord {
  std::vector<std::string> boundaries;
  Matrix<Scalar> scores;  // B x M
  Vector<Scalar> lens;    // B
};

template <typename Scalar>
struct PyDecomposition {
  std::shared_ptr<const io::LoadedModel<Scalar>> loaded;  // the Decomposition points into it
  Decomposition<Scalar> result;
  std::optional<TraceRecord<Scalar>> trace;
};

/// A LogitTrace from decompose's `trace` argument: None, or (position, target[, foil]).
template <typename Scalar>
std::optional<LogitTrace<Scalar>> make_trace(const Model<Scalar>& model, const py::object& spec) {
  if (spec.is_none()) return std::nullopt;
  const std::vector<long> t = spec.cast<std::vector<long>>();
  if (t.size() != 2 && t.size() != 3)
    throw std::invalid_argument("trace must be (position, target) or (position, target, foil), got " +
                                std::to_string(t.size()) + " values");
  return LogitTrace<Scalar>(model, t[0], static_cast<int>(t[1]), t.size() == 3 ? static_cast<int>(t[2]) : -1);
}

/// decompose's gemm_precision: "native" (the model's precision) or "bf16".
inline GemmPrecision parse_gemm_precision(const std::string& name) {
  if (name == "native") return GemmPrecision::Native;
  if (name == "bf16") {
    if (!bf16_available()) throw std::invalid_argument("gemm_precision 'bf16': " + bf16_unavailable_reason());
    return GemmPrecision::Bf16;
  }
  throw std::invalid_argument("gemm_precision '" + name + "' is unknown (allowed: native, bf16)");
}

inline DecomposeOptions make_options(const std::string& split, double temperature, bool bos_sink, const Boundary& end,
                                     long chunk_size, std::size_t memory_budget_bytes,
                                     const std::vector<long>& keep_positions, bool straightforward, long work_rows) {
  DecomposeOptions o;
  o.split = parse_mlp_split(split);
  o.temperature = temperature;
  o.bos_sink = bos_sink;
  o.end = end;
  o.chunk_size = chunk_size;
  o.memory_budget_bytes = memory_budget_bytes;
  o.keep_positions = keep_positions;
  o.straightforward = straightforward;
  o.work_rows = work_rows;
  return o;
}

inline py::dict completeness_dict(const BoundaryCheck& c) {
  py::dict d;
  d["boundary"] = c.boundary.to_string();
  d["final_normed"] = c.final_normed;
  d["residual_max_abs"] = c.residual_max_abs;
  d["state_max_abs"] = c.state_max_abs;
  return d;
}

template <typename Scalar>
void bind_decomposition(py::module_& m, const char* name) {
  using PD = PyDecomposition<Scalar>;
  py::class_<PD>(m, name, "The result of Model.decompose (one per precision).")
      .def_property_readonly(
          "components",
          [](py::object self) {
            const ComponentTensor<Scalar>& C = self.cast<const PD&>().result.components();
            const py::ssize_t s = sizeof(Scalar), P = C.positions(), D = C.width();
            return readonly_view<Scalar>({C.components(), P, D}, {P * D * s, D * s, s}, C.stacked().data(), self);
          },
          "M x P x D read-only view of the components at the end boundary (no copy; P: every position, or the "
          "kept ones). At the output they are final-normed, so component_logits is their product with the "
          "unembedding.")
      .def_property_readonly(
          "state",
          [](py::object self) {
            const Matrix<Scalar>& x = self.cast<const PD&>().result.state();
            const py::ssize_t s = sizeof(Scalar);
            return readonly_view<Scalar>({x.rows(), x.cols()}, {s, x.rows() * s}, x.data(), self);
          },
          "N x D read-only view of the real state at the end boundary (final-normed at the output).")
      .def_property_readonly("labels", [](const PD& d) { return d.result.labels(); })
      .def_property_readonly("component_count", [](const PD& d) { return d.result.component_count(); })
      .def_property_readonly("positions", [](const PD& d) { return d.result.positions(); })
      .def_property_readonly("kept_positions", [](const PD& d) { return d.result.kept_positions(); })
      .def_property_readonly("bias_component", [](const PD& d) { return d.result.bias_component(); })
      .def_property_readonly("chunk_residual_component",
                             [](const PD& d) { return d.result.chunk_residual_component(); })
      .def_property_readonly("chunked", [](const PD& d) { return d.result.chunked(); })
      .def_property_readonly("chunk_count", [](const PD& d) { return d.result.chunk_count(); })
      .def_property_readonly("end", [](const PD& d) { return d.result.end(); })
      .def_property_readonly("gemm_kernel", [](const PD& d) { return d.result.gemm_kernel(); },
                             "With gemm_precision='bf16': what ran the bf16 products (oneDNN's kernel names, or "
                             "the fallback); empty otherwise, or if no product ran.")
      .def_property_readonly(
          "completeness",
          [](const PD& d) {
            py::list checks;
            for (const BoundaryCheck& c : d.result.completeness()) checks.append(completeness_dict(c));
            return checks;
          },
          "Per boundary of every pass: {boundary, final_normed, residual_max_abs, state_max_abs}, where "
          "residual_max_abs = max |sum of components - state|.")
      .def("max_relative_residual", [](const PD& d) { return d.result.max_relative_residual(); })
      .def_property_readonly(
          "trace",
          [](const PD& d) -> py::object {
            if (!d.trace) return py::none();
            py::dict t;
            t["boundaries"] = d.trace->boundaries;
            t["scores"] = d.trace->scores;
            t["lens"] = d.trace->lens;
            return t;
          },
          "With decompose(..., trace=(position, target[, foil])): LogitTrace's {boundaries: names, scores: "
          "B x M lens logits per component, lens: B real-state lens logits}; else None.")
      .def("logit", [](const PD& d, Eigen::Index position, int target) { return d.result.logit(position, target); },
           py::arg("position"), py::arg("target"))
      .def("logits", [](const PD& d, Eigen::Index position) { return d.result.logits(position); }, py::arg("position"))
      .def(
          "component_logits",
          [](const PD& d, Eigen::Index position, std::optional<int> target) -> py::object {
            if (target) return py::cast(d.result.component_logits(position, *target));
            return py::cast(d.result.component_logits(position));
          },
          py::arg("position"), py::arg("target") = py::none(),
          "Each component's logit for target at position (M values summing to logit(position, target)); "
          "without target, every component's logits (M x V).")
      .def(
          "top_tokens",
          [](const PD& d, Eigen::Index component, Eigen::Index position, int k) {
            return d.result.top_tokens(component, position, k);
          },
          py::arg("component"), py::arg("position"), py::arg("k") = 10,
          "The k tokens component pushes up most at position, best first: [(token id, logit)].")
      .def("__repr__", [name](const PD& d) {
        return std::string("<depass.") + name + ": " + std::to_string(d.result.component_count()) + " components x " +
               std::to_string(d.result.components().positions()) + " positions, ends " + d.result.end().to_string() +
               ">";
      });
}

inline py::dict config_dict(const Config& c) {
  py::dict d;
  d["architecture"] = c.architecture;
  d["dim"] = c.dim;
  d["n_layers"] = c.n_layers;
  d["n_heads"] = c.n_heads;
  d["n_kv_heads"] = c.n_kv_heads;
  d["head_dim"] = c.head_dim;
  d["hidden_dim"] = c.hidden_dim;
  d["vocab_size"] = c.vocab_size;
  d["max_seq_len"] = c.max_seq_len;
  return d;
}

/// Model.generate: Model::generate one token at a time (the same greedy loop), so that
/// Ctrl-C works between tokens.
template <typename Scalar>
std::vector<int> generate(const PyModel<Scalar>& p, const py::object& prompt, int max_new,
                          std::optional<int> stop_token) {
  if (max_new < 0) throw std::invalid_argument("max_new = " + std::to_string(max_new) + " must be >= 0");
  std::vector<int> sequence = p.ids(prompt);
  p.model().check_tokens(sequence);
  const int stop = stop_token ? *stop_token : -1;
  std::vector<int> generated;
  while (static_cast<int>(generated.size()) < max_new) {
    std::vector<int> next;
    {
      py::gil_scoped_release release;
      next = p.model().generate(sequence, 1, stop);
    }
    check_signals();
    if (next.empty()) break;  // the context is full
    sequence.push_back(next.front());
    generated.push_back(next.front());
    if (next.front() == stop) break;
  }
  return generated;
}

/// Model.decompose: Decomposer::run with the GIL released, the interrupt hook, and the
/// LogitTrace when asked for.
template <typename Scalar>
PyDecomposition<Scalar> decompose(const PyModel<Scalar>& p, const py::object& prompt, const InitSpec& init,
                                  const DecomposeOptions& options, const py::object& progress,
                                  const py::object& trace_spec) {
  const std::vector<int> ids = p.ids(prompt);
  const Initialisation<Scalar> start = to_initialisation<Scalar>(init);
  if (!progress.is_none() && !PyCallable_Check(progress.ptr()))
    throw std::invalid_argument("progress must be a callable progress(name, layer, boundary) or None");
  const Hook<Scalar> interrupt = interrupt_hook<Scalar>(progress);
  std::optional<LogitTrace<Scalar>> trace = make_trace(p.model(), trace_spec);
  const Hook<Scalar> hook = !trace ? interrupt : Hook<Scalar>([&](const HookEvent<Scalar>& e) {
    interrupt(e);
    trace->record(e);
  });
  PyDecomposition<Scalar> out{p.loaded, {}, std::nullopt};
  {
    py::gil_scoped_release release;
    out.result = Decomposer<Scalar>(p.model()).run(ids, start, options, hook);
  }
  if (trace) out.trace = TraceRecord<Scalar>{trace->boundary_names(), trace->scores(), trace->lens()};
  return out;
}

constexpr const char* kDecomposeDoc =
    "DePass (Decomposer::run): a text prompt or token ids, split as init says, propagated to `end`; the other "
    "arguments are DecomposeOptions'. progress(name, layer, boundary), if given, is called at each "
    "residual-stream event (start, attn_resid, layer_out; boundary as Boundary::index counts); an exception it "
    "raises stops the run. trace=(position, target[, foil]) records LogitTrace: every component's logit lens "
    "at each boundary (result.trace). gemm_precision='bf16' (float32 models, builds with oneDNN: "
    "depass.bf16_available()) runs the propagation's weight products in bfloat16 with float sums; "
    "result.completeness then says what that costs at every boundary.";

}  // namespace python
}  // namespace depass

#include "Methods.hpp"

namespace depass {
namespace python {

template <typename Scalar>
void bind_model(py::module_& m, const char* name) {
  using PM = PyModel<Scalar>;
  py::class_<PM> model_class(m, name, "A loaded checkpoint and its tokenizer (one class per precision).");
  bind_methods<Scalar>(model_class);
  model_class
      .def_property_readonly("precision", [](const PM&) {
        return std::string(std::is_same<Scalar, float>::value ? "float32" : "float64");
      })
      .def_property_readonly("config", [](const PM& p) { return config_dict(p.model().config()); })
      .def_property_readonly("has_tokenizer", [](const PM& p) { return p.loaded->tokenizer.has_value(); })
      .def_property_readonly("tokenizer_path", [](const PM& p) { return p.loaded->tokenizer_path; })
      .def_property_readonly("bos_id", [](const PM& p) { return p.tokenizer("bos_id").bos_id(); })
      .def_property_readonly("eos_id", [](const PM& p) { return p.tokenizer("eos_id").eos_id(); })
      .def("tokenize", [](const PM& p, const std::string& text, bool add_bos) { return p.tokenizer("tokenize").encode(text, add_bos); },
           py::arg("text"), py::arg("add_bos") = true)
      .def("decode", [](const PM& p, const std::vector<int>& ids) { return p.tokenizer("decode").decode(ids); },
           py::arg("ids"))
      .def("piece", [](const PM& p, int id) { return py::bytes(p.tokenizer("piece").piece(id)); }, py::arg("id"),
           "The raw bytes of one token.")
      .def(
          "logits",
          [](const PM& p, const py::object& prompt) {
            const std::vector<int> ids = p.ids(prompt);
            const Hook<Scalar> hook = interrupt_hook<Scalar>();
            py::gil_scoped_release release;
            return Matrix<Scalar>(p.model().forward(ids, hook));
          },
          py::arg("prompt"), "The plain forward pass: N x V logits of a text prompt or token ids.")
      .def("generate", &generate<Scalar>, py::arg("prompt"), py::arg("max_new"), py::arg("stop_token") = py::none(),
           "Greedy continuation (Model::generate): up to max_new new token ids, stopping after stop_token or "
           "when the context is full.")
      .def(
          "decompose",
          [](const PM& p, const py::object& prompt, const InitSpec& init, const std::string& split, double temperature,
             bool bos_sink, double sink_ratio, const py::object& end, long chunk_size, std::size_t memory_budget_bytes,
             const std::vector<long>& keep_positions, bool straightforward, long work_rows, const py::object& progress,
             const py::object& trace, const std::string& gemm_precision) {
            DecomposeOptions options = make_options(split, temperature, bos_sink, to_boundary(end, "end"), chunk_size,
                                                    memory_budget_bytes, keep_positions, straightforward, work_rows);
            options.sink_ratio = sink_ratio;
            options.gemm_precision = parse_gemm_precision(gemm_precision);
            return decompose(p, prompt, init, options, progress, trace);
          },
          py::arg("prompt"), py::arg("init") = InitSpec{}, py::arg("split") = "softmax", py::arg("temperature") = 0.1,
          py::arg("bos_sink") = true, py::arg("sink_ratio") = 0.0, py::arg("end") = Boundary::output(),
          py::arg("chunk_size") = 0, py::arg("memory_budget_bytes") = 0, py::arg("keep_positions") = std::vector<long>{},
          py::arg("straightforward") = false, py::arg("work_rows") = DecomposeOptions{}.work_rows,
          py::arg("progress") = py::none(), py::arg("trace") = py::none(), py::arg("gemm_precision") = "native",
          kDecomposeDoc)
      .def("__repr__", [name](const PM& p) {
        const Config& c = p.model().config();
        return std::string("<depass.") + name + ": " + c.architecture + ", " + std::to_string(c.n_layers) +
               " layers, dim " + std::to_string(c.dim) + ", vocab " + std::to_string(c.vocab_size) + ">";
      });
}

template <typename Scalar>
py::object load_as(const std::string& path, const std::string& tokenizer) {
  PyModel<Scalar> p;
  {
    py::gil_scoped_release release;
    p.loaded = std::make_shared<const io::LoadedModel<Scalar>>(io::load_model<Scalar>(path, tokenizer));
  }
  return py::cast(std::move(p));
}

// ---------------------------------------------------------------------------------------
// Exceptions: same messages, Python's types
// ---------------------------------------------------------------------------------------

inline void register_exceptions(py::module_& m) {
  static py::exception<FormatError> format_error(m, "FormatError", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const py::builtin_exception&) {
      throw;  // pybind11's own (cast errors, StopIteration, ...): its translator
    } catch (const FormatError& e) {
      format_error(e.what());
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::runtime_error& e) {
      const bool missing = std::strncmp(e.what(), "cannot open", 11) == 0;
      PyErr_SetString(missing ? PyExc_FileNotFoundError : PyExc_RuntimeError, e.what());
    }
  });
}

inline void bind_boundary(py::module_& m) {
  py::class_<Boundary>(m, "Boundary", "A point of the residual stream (before_attention(l), before_mlp(l), output()).")
      .def(py::init(&parse_boundary), py::arg("text"))
      .def_static("before_attention", &Boundary::before_attention, py::arg("layer"))
      .def_static("before_mlp", &Boundary::before_mlp, py::arg("layer"))
      .def_static("output", &Boundary::output)
      .def_readonly("layer", &Boundary::layer)
      .def_property_readonly("site", [](const Boundary& b) { return b.site == Site::Mlp ? "mlp" : "attention"; })
      .def_readonly("is_output", &Boundary::is_output)
      .def("__str__", &Boundary::to_string)
      .def("__repr__", [](const Boundary& b) { return "Boundary('" + b.to_string() + "')"; });
}

/// depass.Tokens(), Heads(), ...: the Initialisation factories, as plain data (InitSpec).
inline void bind_initialisations(py::module_& m) {
  py::class_<InitSpec>(m, "Initialisation", "What the components are; made by Tokens(), Heads(), Neurons(), ...")
      .def("__repr__", &init_repr);
  m.def(
      "Tokens", [](const py::object& start) { InitSpec s; s.start = to_boundary(start, "start"); return s; },
      py::arg("start") = Boundary::before_attention(0), "One component per input token, from `start` on.");
  m.def(
      "Heads", [](int layer) { InitSpec s; s.kind = InitKind::Head; s.layer = layer; return s; }, py::arg("layer"),
      "{residual, head 0, ..., head H-1} after the attention of layer.");
  m.def(
      "Neurons",
      [](int layer, std::optional<std::vector<int>> ids) {
        InitSpec s;
        s.kind = InitKind::Neuron;
        s.layer = layer;
        s.site = Site::Mlp;
        s.neurons = ids.value_or(std::vector<int>{});
        return s;
      },
      py::arg("layer"), py::arg("ids") = py::none(),
      "{residual, each selected neuron (all when ids is None), the other neurons} after the MLP of layer.");
  m.def(
      "Module",
      [](int layer, const std::string& site) {
        InitSpec s;
        s.kind = InitKind::Module;
        s.layer = layer;
        s.site = parse_site(site);
        return s;
      },
      py::arg("layer"), py::arg("site") = "attention", "{state before the block, the block's output}.");
  m.def(
      "Subspaces",
      [](const py::object& at, std::vector<py::array> bases, bool projections) {
        InitSpec s;
        s.kind = InitKind::Subspace;
        s.start = to_boundary(at, "boundary");
        s.bases = std::move(bases);
        s.projections = projections;
        return s;
      },
      py::arg("boundary"), py::arg("bases"), py::arg("projections") = false,
      "x P_s for each D x k basis (orthogonal projection onto its span; or D x D projections as given) "
      "plus the remainder.");
  m.def(
      "Custom",
      [](const py::object& at, py::array components, std::optional<std::vector<std::string>> labels) {
        InitSpec s;
        s.kind = InitKind::Custom;
        s.start = to_boundary(at, "boundary");
        s.custom = std::move(components);
        s.labels = labels.value_or(std::vector<std::string>{});
        return s;
      },
      py::arg("boundary"), py::arg("components"), py::arg("labels") = py::none(),
      "Any M x N x D split of the state at boundary (verified to sum to it).");
}

}  // namespace python
}  // namespace depass

PYBIND11_MODULE(_depass, m) {
  using namespace depass;
  using namespace depass::python;
  m.doc() = "depass: DePass (decomposed forward pass) attributions for transformer language models";
  m.attr("__version__") = DEPASS_VERSION_STRING;
  register_exceptions(m);

  bind_boundary(m);
  bind_initialisations(m);

  bind_decomposition<double>(m, "DecompositionFloat64");
  bind_decomposition<float>(m, "DecompositionFloat32");
  bind_attribution<double>(m, "AttributionFloat64");
  bind_attribution<float>(m, "AttributionFloat32");
  bind_model<double>(m, "ModelFloat64");
  bind_model<float>(m, "ModelFloat32");

  m.def(
      "load",
      [](const std::string& path, std::optional<std::string> tokenizer, const std::string& precision) {
        const std::string tok = tokenizer.value_or("");
        if (precision == "float64") return load_as<double>(path, tok);
        if (precision == "float32") return load_as<float>(path, tok);
        throw std::invalid_argument("precision '" + precision + "' is unknown (allowed: float64, float32)");
      },
      py::arg("path"), py::arg("tokenizer") = py::none(), py::arg("precision") = "float64",
      "Loads a checkpoint (llama2.c .bin, GGUF, Hugging Face directory) and its tokenizer (given, or the one "
      "it carries or sits next to).");
  m.def("bf16_available", &bf16_available,
        "Whether this build has the bf16 mode (oneDNN): decompose(..., gemm_precision='bf16').");
  m.def("set_threads", &set_threads, py::arg("count"), "Threads of every later run (depass::set_threads).");
  m.def("threads", &threads);
  m.def("reuse_freed_memory", &reuse_freed_memory,
        "Has glibc keep freed matrices on the heap for the next run (depass::reuse_freed_memory; a process-wide "
        "setting, never made by importing depass). Returns whether the allocator took it.");
}
