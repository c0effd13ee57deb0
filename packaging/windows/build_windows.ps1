# Build the Windows installer of fusion-gui: PyInstaller onedir, then Inno Setup.
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build_windows.ps1
# Needs: Python 3.11 x64 (the `py` launcher), Inno Setup 6 (iscc.exe on PATH or in its default folder).
# Environment: TORCH_INDEX (default https://download.pytorch.org/whl/cpu; a CUDA build uses e.g. .../whl/cu128),
#              FUSION_GUI_VENV (default .venv-win).
$ErrorActionPreference = "Stop"
$Root = (Resolve-Path "$PSScriptRoot\..\..").Path
Set-Location $Root
$Venv = if ($env:FUSION_GUI_VENV) { $env:FUSION_GUI_VENV } else { ".venv-win" }
$TorchIndex = if ($env:TORCH_INDEX) { $env:TORCH_INDEX } else { "https://download.pytorch.org/whl/cpu" }
$Py = "$Venv\Scripts\python.exe"

function Run($exe, [string[]]$argv) {
    & $exe @argv
    if ($LASTEXITCODE -ne 0) { throw "$exe $argv failed with exit code $LASTEXITCODE" }
}

if (-not (Test-Path $Py)) { Run "py" @("-3.11", "-m", "venv", $Venv) }
Run $Py @("-m", "pip", "install", "-q", "--upgrade", "pip")
# torch first, from the index that decides CPU or CUDA (PyPI's Windows wheel is the CPU build)
Run $Py @("-m", "pip", "install", "-q", "torch==2.13.0", "--index-url", $TorchIndex)
Run $Py @("-m", "pip", "install", "-q", "-e", ".[gui]", "pyinstaller")
Run $Py @("packaging\make_icon.py")

$sw = [Diagnostics.Stopwatch]::StartNew()
Run $Py @("-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath", "dist",
          "--workpath", "build\pyinstaller", "packaging\fusion_gui.spec")
Write-Host ("PyInstaller: {0:N0} s" -f $sw.Elapsed.TotalSeconds)

# the packaged app must run on its own: selftest with the bundled interpreter
Run "dist\fusion-gui\fusion-gui.exe" @("--selftest")

$Version = (& $Py -c "import fusion_gui; print(fusion_gui.__version__)").Trim()
$Iscc = (Get-Command iscc.exe -ErrorAction SilentlyContinue).Source
if (-not $Iscc) { $Iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" }
if (-not (Test-Path $Iscc)) { throw "Inno Setup 6 (ISCC.exe) not found; install it from https://jrsoftware.org/isinfo.php" }
Run $Iscc @("/DAppVersion=$Version", "packaging\windows\fusion_gui.iss")
Write-Host ("Installer: dist\fusion-gui-$Version-windows-x64-setup.exe ({0:N0} s in all)" -f $sw.Elapsed.TotalSeconds)
