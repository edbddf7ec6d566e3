#pragma once
// Everything in one include: models, loaders, tokenizers and the DePass engine.

#include "Boundary.hpp"
#include "ComponentState.hpp"
#include "ComponentTensor.hpp"
#include "Config.hpp"
#include "Decomposer.hpp"
#include "Error.hpp"
#include "Hook.hpp"
#include "Initialisation.hpp"
#include "LogitTrace.hpp"
#include "Model.hpp"
#include "Threads.hpp"
#include "Tokenizer.hpp"
#include "Weights.hpp"
#include "io/Load.hpp"
#include "io/LoadModel.hpp"
