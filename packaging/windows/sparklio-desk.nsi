; Sparklio Desk — Windows installer (NSIS 3, built offline by scripts/package-windows.sh).
;
; Per-user, no administrator rights:
;   files      %LOCALAPPDATA%\Programs\Sparklio Desk\ (sparklio-desk-app.exe, sparklio-desk.exe,
;              WebView2Loader.dll, the gpu-desktop config template, docs)
;   shortcut   Start menu: Sparklio Desk
;   autostart  optional "Start at login": HKCU\Software\Microsoft\Windows\CurrentVersion\Run,
;              value "Sparklio Desk" (the value the tray's Start at login item writes)
;   config     %APPDATA%\Sparklio\Sparklio Desk\config\sparklio-desk.toml, written only when
;              none exists: an upgrade never overwrites the owner's config
;   uninstall  removes the program, shortcut, Run value and uninstall entry; config and data
;              stay unless asked (the checkbox, or /PURGE on the command line)
; Silent: setup.exe /S [/NOAUTOSTART] [/D=C:\other\folder] ; uninstall.exe /S [/PURGE]
;
; Defines from the build script: VERSION, SRC (staged files), OUTFILE.

; A 64-bit installer for a 64-bit app (it also runs under a 64-bit-only Wine).
Target amd64-unicode
!ifdef FAST_COMPRESSION
  SetCompressor zlib ; test packages of debug builds (CI): seconds instead of a minute
!else
  SetCompressor /SOLID lzma
!endif
RequestExecutionLevel user
ManifestDPIAware true

!include "MUI2.nsh"
!include "FileFunc.nsh"
!include "LogicLib.nsh"

!ifndef VERSION
  !define VERSION "0.0.0"
!endif
!define PRODUCT "Sparklio Desk"
!define APP_EXE "sparklio-desk-app.exe"
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"
!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\SparklioDesk"
!define CONFIG_DIR "$APPDATA\Sparklio\Sparklio Desk\config"
!define CONFIG_FILE "${CONFIG_DIR}\sparklio-desk.toml"

Name "${PRODUCT}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\${PRODUCT}"
InstallDirRegKey HKCU "${UNINST_KEY}" "InstallLocation"
BrandingText "${PRODUCT} ${VERSION}"
VIProductVersion "${VERSION}.0"
VIAddVersionKey "ProductName" "${PRODUCT}"
VIAddVersionKey "FileDescription" "${PRODUCT} installer"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "CompanyName" "Sparklio"
VIAddVersionKey "LegalCopyright" "MIT"

!define MUI_ICON "${SRC}\icon.ico"
!define MUI_UNICON "${SRC}\icon.ico"
!define MUI_ABORTWARNING
!define MUI_FINISHPAGE_RUN "$INSTDIR\${APP_EXE}"
!define MUI_FINISHPAGE_RUN_TEXT "Start Sparklio Desk now"
!define MUI_FINISHPAGE_SHOWREADME "$INSTDIR\docs\windows.html"
!define MUI_FINISHPAGE_SHOWREADME_TEXT "Open the setup guide (first green dashboard)"
!define MUI_FINISHPAGE_SHOWREADME_NOTCHECKED

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_COMPONENTS
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"
!insertmacro MUI_LANGUAGE "Korean"

Section "Sparklio Desk (required)" SecMain
  SectionIn RO
  SetOutPath "$INSTDIR"
  ; An upgrade while the tray app runs: ask it to quit first (files in use cannot be replaced).
  nsExec::Exec '"$SYSDIR\taskkill.exe" /IM ${APP_EXE}'
  Sleep 500
  File "${SRC}\${APP_EXE}"
  File "${SRC}\sparklio-desk.exe"
  File "${SRC}\WebView2Loader.dll"
  File "${SRC}\gpu-desktop.toml"
  File "${SRC}\README.txt"
  SetOutPath "$INSTDIR\docs"
  File /r "${SRC}\docs\*"
  SetOutPath "$INSTDIR"

  ; The owner's config: written once, never over an existing file.
  ${IfNot} ${FileExists} "${CONFIG_FILE}"
    CreateDirectory "${CONFIG_DIR}"
    CopyFiles /SILENT "$INSTDIR\gpu-desktop.toml" "${CONFIG_FILE}"
    DetailPrint "Wrote the gpu-desktop config: ${CONFIG_FILE}"
  ${Else}
    DetailPrint "Kept the existing config: ${CONFIG_FILE}"
  ${EndIf}

  CreateShortCut "$SMPROGRAMS\${PRODUCT}.lnk" "$INSTDIR\${APP_EXE}" "" "$INSTDIR\${APP_EXE}" 0

  WriteUninstaller "$INSTDIR\uninstall.exe"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayName" "${PRODUCT}"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINST_KEY}" "Publisher" "Sparklio"
  WriteRegStr HKCU "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\${APP_EXE}"
  WriteRegStr HKCU "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINST_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINST_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINST_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  WriteRegDWORD HKCU "${UNINST_KEY}" "EstimatedSize" $0
SectionEnd

Section "Start at login" SecAutostart
  ; Same value as the tray's "Start at login" item (tauri-plugin-autostart), so either can undo it.
  WriteRegStr HKCU "${RUN_KEY}" "${PRODUCT}" '"$INSTDIR\${APP_EXE}"'
SectionEnd

!insertmacro MUI_FUNCTION_DESCRIPTION_BEGIN
  !insertmacro MUI_DESCRIPTION_TEXT ${SecMain} "The tray app, the headless sparklio-desk.exe and the gpu-desktop config (only if you have no config yet)."
  !insertmacro MUI_DESCRIPTION_TEXT ${SecAutostart} "Start the tray app when you sign in. (To run before anyone signs in, see the guide: sparklio-desk service install.)"
!insertmacro MUI_FUNCTION_DESCRIPTION_END

Function .onInit
  ${GetParameters} $R0
  ClearErrors
  ${GetOptions} $R0 "/NOAUTOSTART" $R1
  ${IfNot} ${Errors}
    !insertmacro UnselectSection ${SecAutostart}
  ${EndIf}
FunctionEnd

Section "un.Sparklio Desk" UnSecMain
  SectionIn RO
  nsExec::Exec '"$SYSDIR\taskkill.exe" /IM ${APP_EXE}'
  Sleep 500
  Delete "$INSTDIR\${APP_EXE}"
  Delete "$INSTDIR\sparklio-desk.exe"
  Delete "$INSTDIR\WebView2Loader.dll"
  Delete "$INSTDIR\gpu-desktop.toml"
  Delete "$INSTDIR\README.txt"
  RMDir /r "$INSTDIR\docs"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"
  Delete "$SMPROGRAMS\${PRODUCT}.lnk"
  DeleteRegValue HKCU "${RUN_KEY}" "${PRODUCT}"
  DeleteRegValue HKCU "Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run" "${PRODUCT}"
  DeleteRegKey HKCU "${UNINST_KEY}"
SectionEnd

Section /o "un.Also remove my config and data (usage log, events, images)" UnSecData
  RMDir /r "$APPDATA\Sparklio\Sparklio Desk"
  RMDir "$APPDATA\Sparklio"
SectionEnd

Function un.onInit
  ${GetParameters} $R0
  ClearErrors
  ${GetOptions} $R0 "/PURGE" $R1
  ${IfNot} ${Errors}
    !insertmacro SelectSection ${UnSecData}
  ${EndIf}
FunctionEnd
