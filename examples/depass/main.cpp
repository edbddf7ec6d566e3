// depass: command-line front end of the DePass library.
//   depass COMMAND [options]      (depass --help lists the commands)
// Commands: tokens, modules, heads, neurons, subspace, decode, generate [--explain],
// tokenize, info.
// Every attribution command builds one JSON document (schemas in docs/cli.md) and
// renders it as text, JSON, CSV, NPY or a self-contained HTML report (depass::output).

#include "Commands.hpp"

#include <depass/Allocator.hpp>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace cli {

const char* kInfoHelp =
    "usage: depass info --model PATH [--tokenizer PATH] [--format text|json|csv|html] [--output FILE]\n"
    "\n"
    "Model summary: file format, architecture, dimensions, layers, heads, key/value heads,\n"
    "vocabulary, context length, parameter count, RoPE layout, tied embeddings, biases,\n"
    "and the tokenizer found (if any).\n"
    "\n"
    DEPASS_CLI_MODEL_LINE
    "  --tokenizer PATH     tokenizer to describe (default: found next to the checkpoint, or\n"
    "                       inside the GGUF file / model directory)\n"
    "  --format F, --output FILE, --json FILE, --quiet   as for the other commands (no npy)\n"
    "exit status: 0 success, 1 failure (unreadable or malformed file), 2 command-line mistake\n"
    "\n"
    "examples:\n"
    "  depass info --model models/stories260K/stories260K.bin\n"
    "  depass info --model models/tinystories-656k --format json\n";

namespace {

template <typename Scalar>
long long parameter_count(const depass::Weights<Scalar>& w) {
  long long n = w.token_embedding.size() + w.position_embedding.size() + w.final_norm.size() + w.final_norm_bias.size() +
                w.output.size();
  for (const auto& l : w.layers)
    n += l.attention_norm.size() + l.wq.size() + l.wk.size() + l.wv.size() + l.wo.size() + l.bq.size() + l.bk.size() +
         l.bv.size() + l.bo.size() + l.mlp_norm.size() + l.w1.size() + l.w3.size() + l.w2.size() + l.b1.size() +
         l.b3.size() + l.b2.size() + l.q_norm.size() + l.k_norm.size() + l.attention_norm_bias.size() +
         l.mlp_norm_bias.size() + l.attention_post_norm.size() + l.mlp_post_norm.size();
  return n;
}

int run_info(const Args& args) {
  check_output_options(args);
  if (output_format(args) == "npy") throw UsageError("info has no score array; use --format text, json, csv or html");
  Loaded<float> l = load<float>(args);
  const depass::Config& c = l.model->config();
  json doc;
  doc["schema"] = depass::output::schema::kInfo;
  doc["depass_version"] = depass::version_string();
  doc["model"] = l.path;
  doc["format"] = depass::io::to_string(l.format);
  doc["architecture"] = c.architecture;
  doc["dim"] = c.dim;
  doc["n_layers"] = c.n_layers;
  doc["n_heads"] = c.n_heads;
  doc["n_kv_heads"] = c.n_kv_heads;
  doc["head_dim"] = c.head_dim;
  doc["hidden_dim"] = c.hidden_dim;
  doc["vocab_size"] = c.vocab_size;
  doc["max_seq_len"] = c.max_seq_len;
  doc["parameters"] = parameter_count(l.model->weights());
  doc["rope_layout"] = depass::to_string(c.rope_layout);
  doc["rope_theta"] = c.rope_theta;
  doc["norm_eps"] = c.norm_eps;
  doc["tied_embeddings"] = c.tied_embeddings;
  doc["biases"] = {{"attention_qkv", c.attention_qkv_bias}, {"attention_out", c.attention_out_bias}, {"mlp", c.mlp_bias}};
  doc["mlp"] = depass::to_string(c.mlp);
  // Gemma and Gemma 2 (0 / 1 / false for the other families).
  doc["embedding_scale"] = c.embedding_scale;
  doc["post_norms"] = c.post_norms;
  doc["attention_softcap"] = c.attention_softcap;
  doc["final_softcap"] = c.final_softcap;
  // GPT-NeoX: rotated dimensions per head, both blocks reading the layer input.
  doc["rotary_dims"] = c.positions == depass::PositionKind::Rotary ? c.rotated_dims() : 0;
  doc["parallel_residual"] = c.parallel_residual;
  if (l.tokenizer)
    doc["tokenizer"] = {{"kind", l.tokenizer_kind},
                        {"path", l.tokenizer_path},
                        {"vocab_size", l.tokenizer->vocab_size()},
                        {"bos_id", l.tokenizer->bos_id()},
                        {"eos_id", l.tokenizer->eos_id()}};
  else
    doc["tokenizer"] = nullptr;
  emit(args, doc);
  return 0;
}

}  // namespace

int command_info(const Args& args) {
  args.allow_only({"--model", "--tokenizer", "--format", "--output", "--json", "--quiet", "--color", "--threads", "--help"});
  return run_info(args);
}

const std::vector<Command>& commands() {
  static const std::vector<Command> list = {
      {"tokens", "attribute a prediction to the input tokens", kTokensHelp, command_tokens},
      {"modules", "attention vs MLP output of every layer", kModulesHelp, command_modules},
      {"heads", "every attention head's contribution (layers x heads)", kHeadsHelp, command_heads},
      {"neurons", "top MLP neurons of a layer", kNeuronsHelp, command_neurons},
      {"subspace", "propagate projections onto given subspaces (.npy bases)", kSubspaceHelp, command_subspace},
      {"decode", "top tokens of every component", kDecodeHelp, command_decode},
      {"generate", "greedy generation; --explain attributes every new token", kGenerateHelp, command_generate},
      {"tokenize", "token ids and pieces of a text", kTokenizeHelp, command_tokenize},
      {"evaluate", "faithfulness of attribution methods over a data file", kEvaluateHelp, command_evaluate},
      {"info", "model summary", kInfoHelp, command_info},
  };
  return list;
}

std::string main_help() {
  std::string h =
      "depass " + std::string(depass::version_string()) +
      ": exact attributions for transformer language models (DePass)\n"
      "\n"
      "usage: depass COMMAND [options]\n"
      "\n"
      "commands:\n";
  for (const Command& c : commands()) {
    std::string name = c.name;
    name.resize(10, ' ');
    h += "  " + name + " " + c.summary + "\n";
  }
  h +=
      "\n"
      "--model accepts a llama2.c checkpoint (.bin; its tok<vocab>.bin tokenizer is found next\n"
      "to it, or pass --tokenizer), a GGUF file (tokenizer inside) or a Hugging Face model\n"
      "directory (config.json + model.safetensors + tokenizer.json).\n"
      "Outputs: --format text|json|csv|npy|html or\n"
      "--output FILE (format from the extension). Run `depass COMMAND --help` for details.\n"
      "Exit status: 0 success, 1 failure (unreadable or malformed file, failed batch lines),\n"
      "2 command-line mistake (unknown option or value, out of range, ...).\n"
      "\n"
      "example:\n"
      "  depass tokens --model models/stories260K/stories260K.bin --prompt \"Once upon a time\"\n";
  return h;
}

/// Settings the runtime reads only when the program starts; unless the user set them, the
/// program runs itself again once with them (docs/performance.md):
/// - OMP_WAIT_POLICY=passive: GCC's OpenMP lets idle threads spin between parallel loops by
///   default, and on a busy machine that spinning takes the cores the working threads need.
/// - GLIBC_TUNABLES=glibc.malloc.hugetlb=1: glibc asks for transparent huge pages for the
///   heap, so the weights and the component tensor fault in 2 MiB pages instead of 4 KiB
///   ones (loading llama-random: 0.5 s -> 0.1 s, mostly page-fault system time); only where
///   the kernel gives huge pages on request (transparent_hugepage "madvise").
void prepare_runtime(char** argv) {
  bool changed = false;
#ifdef _OPENMP
  if (std::getenv("OMP_WAIT_POLICY") == nullptr && setenv("OMP_WAIT_POLICY", "passive", 1) == 0) changed = true;
#endif
#if defined(__GLIBC__)
  if (std::getenv("GLIBC_TUNABLES") == nullptr) {
    std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string modes;
    std::getline(thp, modes);
    if (modes.find("[madvise]") != std::string::npos && setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1", 1) == 0)
      changed = true;
  }
#endif
  if (changed) execv("/proc/self/exe", argv);  // returns only if it failed: carry on as we are
}

/// DEPASS_FLOAT_GEMM=eigen|onednn chooses who computes the float products (default: oneDNN
/// where this build has it; GemmPrecision.hpp). False, with a message, for another value.
bool choose_float_gemm() {
  const char* choice = std::getenv("DEPASS_FLOAT_GEMM");
  if (choice == nullptr || *choice == '\0') return true;
  const std::string value = choice;
  try {
    if (value == "eigen") depass::set_float_gemm(depass::FloatGemm::Eigen);
    else if (value == "onednn") depass::set_float_gemm(depass::FloatGemm::OneDnn);
    else throw std::invalid_argument("DEPASS_FLOAT_GEMM must be eigen or onednn, got '" + value + "'");
  } catch (const std::invalid_argument& e) {
    std::cerr << "depass: " << e.what() << "\n";
    return false;
  }
  return true;
}

}  // namespace cli

int main(int argc, char** argv) {
  using namespace cli;
  prepare_runtime(argv);
  depass::reuse_freed_memory();  // many passes: keep freed matrices for the next (docs/performance.md)
  if (!choose_float_gemm()) return 2;
  if (argc < 2) {
    std::cerr << main_help();
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    std::cout << main_help();
    return 0;
  }
  if (name == "--version") {
    std::cout << "depass " << depass::version_string() << "\n";
    return 0;
  }
  const Command* command = nullptr;
  for (const Command& c : commands())
    if (name == c.name) command = &c;
  if (!command) {
    std::vector<std::string> names;
    for (const Command& c : commands()) names.push_back(c.name);
    const std::string near = nearest_option(name, names);
    std::cerr << "depass: unknown command '" << name << "'" << (near.empty() ? "" : " (did you mean '" + near + "'?)") << "\n\n"
              << main_help();
    return 2;
  }
  MpiJob& job = MpiJob::get();
  try {
    job.start(argc, argv);  // under mpirun: MPI_Init, and only rank 0 writes
    const Args args(argc, argv, 2, kFlags);
    if (args.has("--help")) {
      std::cout << command->help;
      return 0;
    }
    const std::string batched[] = {"tokens", "heads", "neurons", "modules"};
    if (args.has("--batch") && std::find(std::begin(batched), std::end(batched), name) == std::end(batched))
      throw UsageError("--batch applies to tokens, heads, neurons and modules");
    // Under mpirun a batch or an evaluation shares out its items; a single run its components.
    job.share_lines(args.has("--batch") || name == "evaluate");
    if (args.has("--threads")) {
      const long threads = args.integer("--threads", 0);
      if (threads < 1 || threads > 1024) throw UsageError("--threads must be in [1, 1024], got " + std::to_string(threads));
      depass::set_threads(static_cast<int>(threads));  // Eigen's products and every engine loop
    }
    return command->run(args);
  } catch (const UsageError& e) {
    if (job.writes()) job.report("depass " + name + ": " + e.what() + "\n(see depass " + name + " --help)");
    if (job.ranks() > 1) job.end(2);  // every rank: the others may be waiting for this one
    return 2;
  } catch (const std::exception& e) {
    job.report("depass " + name + ": error: " + e.what());
    if (job.ranks() > 1) job.end(1);
    return 1;
  }
}
