from taskfit.cli import main

raise SystemExit(main())
