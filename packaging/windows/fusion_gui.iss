; Inno Setup script for fusion-gui (Windows x64). Built by packaging\windows\build_windows.ps1:
;   iscc /DAppVersion=0.1.0 packaging\windows\fusion_gui.iss
; Packs dist\fusion-gui\ (the PyInstaller onedir: fusion-gui.exe console + Fusion.exe windowed) into
; dist\fusion-gui-<version>-windows-x64-setup.exe.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "Fusion"
#define SourceDir "..\..\dist\fusion-gui"

[Setup]
AppId={{6B1F3C2E-5A3D-4F7B-9C21-0E8A4D7F2B91}
AppName={#AppName}
AppVersion={#AppVersion}
AppVerName={#AppName} {#AppVersion}
AppPublisher=fusion-gui developers
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; per-user install without admin rights is offered; admin installs go to Program Files
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=fusion-gui-{#AppVersion}-windows-x64-setup
SetupIconFile=..\..\resources\fusion-gui.ico
UninstallDisplayIcon={app}\Fusion.exe
; torch's DLLs compress well with LZMA2; "ultra64" halves nothing more and takes much longer
Compression=lzma2/normal
SolidCompression=yes
LZMANumBlockThreads=4
WizardStyle=modern
ChangesEnvironment=yes

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "addtopath"; Description: "Add the fusion-gui command to PATH"; GroupDescription: "Command line:"; Flags: unchecked

[Files]
Source: "{#SourceDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{autoprograms}\{#AppName}"; Filename: "{app}\Fusion.exe"; IconFilename: "{app}\Fusion.exe"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\Fusion.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\Fusion.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
Type: filesandordirs; Name: "{app}\_internal"

[Code]
const
  UserEnvKey = 'Environment';
  SystemEnvKey = 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment';

function EnvRoot: Integer;
begin
  if IsAdminInstallMode then Result := HKEY_LOCAL_MACHINE else Result := HKEY_CURRENT_USER;
end;

function EnvKey: String;
begin
  if IsAdminInstallMode then Result := SystemEnvKey else Result := UserEnvKey;
end;

{ Add or remove the install folder on PATH (the "addtopath" task; removed again on uninstall). }
procedure EditPath(Add: Boolean);
var
  Paths, Dir: String;
  P: Integer;
begin
  Dir := ExpandConstant('{app}');
  if not RegQueryStringValue(EnvRoot, EnvKey, 'Path', Paths) then Paths := '';
  P := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';');
  if Add and (P = 0) then
  begin
    if (Paths <> '') and (Paths[Length(Paths)] <> ';') then Paths := Paths + ';';
    RegWriteExpandStringValue(EnvRoot, EnvKey, 'Path', Paths + Dir);
  end
  else if (not Add) and (P > 0) then
  begin
    { P is where Dir starts in Paths; remove it with the ';' before it (or after it, when it comes first) }
    if P > 1 then Delete(Paths, P - 1, Length(Dir) + 1) else Delete(Paths, 1, Length(Dir) + 1);
    RegWriteExpandStringValue(EnvRoot, EnvKey, 'Path', Paths);
  end;
end;

procedure CurStepChanged(CurStep: TSetupStep);
begin
  if (CurStep = ssPostInstall) and WizardIsTaskSelected('addtopath') then EditPath(True);
end;

procedure CurUninstallStepChanged(CurUninstallStep: TUninstallStep);
begin
  if CurUninstallStep = usPostUninstall then EditPath(False);
end;
