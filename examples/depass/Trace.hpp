#pragma once
// --trace / --trace-npy: layer traces (depass::LogitTrace) in the documents.
//
// JSON field "trace" (in tokens documents, and in each layer / module entry of heads and
// modules documents):
//   {"position": P, "boundaries": [b...], "boundary_names": ["before attention 0", ...,
//    "output"], "components": [labels], "scores": [[B x M]], "lens": [B]}
// scores[b][m] is component m's logit-lens value (for the target, minus the contrast) at
// the b-th boundary from the start of the decomposition; lens[b] is that of the real
// state (the row sum); the last row equals the final scores. --trace-npy FILE writes
// scores as a (B, M) float64 array (labels in the JSON's trace.components).

#include <depass/LogitTrace.hpp>

#include "Cli.hpp"

namespace cli {

/// Refuses the trace options where they cannot be honoured. `single_run`: the command
/// makes one decomposition per request (so --trace-npy has one array to write).
inline void check_trace_options(const Args& args, const depass::DecomposeOptions& options, bool single_run) {
  const bool tracing = args.has("--trace") || args.has("--trace-npy");
  if (tracing && may_chunk(options))
    throw UsageError("--trace follows one pass over all components; a chunked run (--chunk-size, --memory-budget) makes "
                     "several, so drop the chunking or the trace");
  if (tracing && options.shards)
    throw UsageError("--trace reads every component at every layer in one process; under mpirun each rank holds only its "
                     "share of them, so run the trace without mpirun");
  if (args.has("--components") && may_chunk(options))
    throw UsageError("--components writes the whole component tensor, which a chunked run does not keep; drop --chunk-size / "
                     "--memory-budget or --components");
  if (args.has("--trace-npy") && !single_run)
    throw UsageError("--trace-npy needs a single decomposition: with heads add --layer L; otherwise use --trace (JSON)");
}

/// The real logits at `position` from a plain forward pass.
template <typename Scalar>
depass::Vector<Scalar> top_logits(const depass::Model<Scalar>& model, const std::vector<int>& ids, long position) {
  return model.forward(ids).row(position).transpose();
}

template <typename Scalar>
json trace_json(const depass::LogitTrace<Scalar>& trace, const std::vector<std::string>& labels) {
  json t;
  t["position"] = trace.position();
  t["boundaries"] = trace.boundaries();
  t["boundary_names"] = trace.boundary_names();
  t["components"] = labels;
  t["scores"] = json::array();
  for (Eigen::Index b = 0; b < trace.scores().rows(); ++b) {
    json row = json::array();
    for (Eigen::Index m = 0; m < trace.scores().cols(); ++m) row.push_back(static_cast<double>(trace.scores()(b, m)));
    t["scores"].push_back(row);
  }
  t["lens"] = json::array();
  for (Eigen::Index b = 0; b < trace.lens().size(); ++b) t["lens"].push_back(static_cast<double>(trace.lens()(b)));
  return t;
}

/// Puts the trace into `entry` (and into --trace-npy when given). `labels` are the
/// components of the pass (the decomposition's labels of an unchunked run).
template <typename Scalar>
void add_trace(const Args& args, json& entry, const depass::LogitTrace<Scalar>& trace, const std::vector<std::string>& labels) {
  entry["trace"] = trace_json(trace, labels);
  if (!args.has("--trace-npy")) return;
  const depass::Matrix<double> scores = trace.scores().template cast<double>();
  if (MpiJob::get().writes()) depass::output::save_npy(args.get("--trace-npy"), depass::output::NpyArray::from_matrix(scores));
  entry["trace_file"] = {{"file", args.get("--trace-npy")}, {"shape", {scores.rows(), scores.cols()}}};
}

}  // namespace cli
