//===- soma/soma.h - Everything a soma user needs --------------------*- C++ -*-===//
#pragma once

#include "soma/array.h"
#include "soma/compile.h"
#include "soma/data.h"
#include "soma/error.h"
#include "soma/executable.h"
#include "soma/graph.h"
#include "soma/io.h"
#include "soma/nn.h"
#include "soma/ops.h"
#include "soma/optim.h"
#include "soma/progress.h"
#include "soma/random.h"
#include "soma/train.h"
#include "soma/training.h"
#include "soma/zoo.h"
