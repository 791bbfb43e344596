/*
 * Samplesheet -> the four BraTS-space images of each row, its brain mask and its reference.
 * dicom_dir rows and rows naming DICOM series folders are converted, native rows are preprocessed
 * (with transforms back to native space and the brain mask preprocess makes), brats rows are used
 * as they are, with the brain mask their `brainmask` column names (none otherwise): the sheet is the
 * whole truth about a row, as in `gliocascade run`.
 */
include { samplesheetToList } from 'plugin/nf-schema'
include { CONVERT           } from '../../../modules/local/convert'
include { PREPROCESS        } from '../../../modules/local/preprocess'

workflow PREPARE_INPUTS {
    take:
    samplesheet

    main:
    rows = namedRows(samplesheetToList(samplesheet, "${projectDir}/assets/schema_input.json"))
    refuseCaseCollisions(rows)
    sheet = channel
        .fromList(rows)
        .branch { row ->
            dicom: row.dicom_dir || [row.t1, row.t1ce, row.t2, row.flair].any { f -> f && f.isDirectory() }
            brats: row.meta.space == 'brats'
            native: true
        }

    CONVERT(sheet.dicom.map { row -> [row.meta, row.dicom_dir ?: [], row.t1 ?: [], row.t1ce ?: [], row.t2 ?: [], row.flair ?: []] })
    atlas = params.atlas ? file(params.atlas, checkIfExists: true) : []
    native_images = sheet.native.map { row -> [row.meta, row.t1, row.t1ce, row.t2, row.flair] }.mix(CONVERT.out.images)
    PREPROCESS(native_images, atlas)

    preprocessed = PREPROCESS.out.images
        .join(PREPROCESS.out.brainmask)
        .map { meta, t1, t1ce, t2, flair, mask -> [meta, t1, t1ce, t2, flair, mask] }
    brats_cases = sheet.brats.map { row -> [row.meta, row.t1 ?: [], row.t1ce ?: [], row.t2 ?: [], row.flair ?: [], row.brainmask ?: []] }

    emit:
    cases      = preprocessed.mix(brats_cases)   // [meta, t1, t1ce, t2, flair, brain mask or []]
    transforms = PREPROCESS.out.transforms.mix(sheet.brats.map { row -> [row.meta, []] })
    references = sheet.dicom.mix(sheet.native, sheet.brats).map { row -> [row.meta, row.seg ?: []] }
    failures   = CONVERT.out.refusal.mix(PREPROCESS.out.refusal)
    // for the report's case pages: preprocess's record (its QC block) and the native T1Gd it read
    records    = PREPROCESS.out.provenance.map { meta, f -> [meta, 'provenance_preprocess', f] }
        .mix(native_images.map { meta, _t1, t1ce, _t2, _flair -> [meta, 'native_t1ce', t1ce] })
}

// samplesheetToList's rows (meta first, then the files in assets/schema_input.json's order) as maps
// by column name, with the defaults of space and label_convention: the one place that knows the order.
def namedRows(table) {
    return table.collect { meta, t1, t1ce, t2, flair, dicom_dir, seg, brainmask ->
        def m = meta + [space: meta.space ?: 'native', label_convention: meta.label_convention ?: '2019']
        return [meta: m, t1: t1, t1ce: t1ce, t2: t2, flair: flair, dicom_dir: dicom_dir, seg: seg, brainmask: brainmask]
    }
}

// Case ids that differ only in case collide on case-insensitive file systems: refused, as `run` does.
def refuseCaseCollisions(rows) {
    def seen = [:]
    rows.each { row ->
        def id = row.meta.id.toString()
        def key = id.toLowerCase()
        if (seen.containsKey(key)) {
            error("samplesheet: case_id '${id}' differs from '${seen[key]}' only in case (they collide on case-insensitive file systems)")
        }
        seen[key] = id
    }
}
