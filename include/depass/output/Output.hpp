#pragma once
// Every depass::output writer in one include: JSON documents, CSV, NPY, HTML reports and
// terminal rendering (heatmaps, tables, progress bar).

#include "Csv.hpp"
#include "HtmlReport.hpp"
#include "Json.hpp"
#include "Npy.hpp"
#include "Terminal.hpp"
#include "Text.hpp"
