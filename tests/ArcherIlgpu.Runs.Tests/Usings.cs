global using Xunit;
global using ArcherIlgpu.Runs;
