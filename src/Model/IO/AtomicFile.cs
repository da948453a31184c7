// The model's files (weights, config.json, tokenizer) are written with the run infrastructure's
// AtomicFile: one atomic writer for the whole project, with unique temporary names (two writers never
// share one) and the crash point that the kill-during-save tests use. Model references Runs rather than
// the other way round because Runs is a leaf library with no dependencies of its own (files, config,
// plots), while Model is a layer above the kernels; this alias keeps the Model code's call sites as they were.
global using AtomicFile = ArcherIlgpu.Runs.AtomicFile;
