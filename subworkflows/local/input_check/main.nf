/*
 * Samplesheet -> one case folder per row in BraTS space.
 * dicom_dir rows and rows naming DICOM series folders are converted, native rows are preprocessed
 * (with transforms back to native space), brats rows are used as they are (their files must lie
 * in one BraTS-layout folder).
 */
include { samplesheetToList } from 'plugin/nf-schema'
include { CONVERT           } from '../../../modules/local/convert'
include { PREPROCESS        } from '../../../modules/local/preprocess'

workflow INPUT_CHECK {
    take:
    samplesheet

    main:
    rows = channel
        .fromList(samplesheetToList(samplesheet, "${projectDir}/assets/schema_input.json"))
        .map { meta, t1, t1ce, t2, flair, dicom_dir, seg ->
            def m = meta + [space: meta.space ?: 'native', label_convention: meta.label_convention ?: '2019']
            [m, t1, t1ce, t2, flair, dicom_dir, seg]
        }
        .branch { row ->
            dicom: row[5] || row[1..4].any { f -> f && f.isDirectory() }
            brats: row[0].space == 'brats'
            native: true
        }

    CONVERT(rows.dicom.map { row -> [row[0], row[5] ?: [], row[1] ?: [], row[2] ?: [], row[3] ?: [], row[4] ?: []] })
    atlas = params.atlas ? file(params.atlas, checkIfExists: true) : []
    PREPROCESS(
        rows.native.map { row -> [row[0], row[1], row[2], row[3], row[4]] }.mix(CONVERT.out.images),
        atlas
    )

    brats_cases = rows.brats.map { row -> [row[0], bratsCaseFolder(row[0].id, [row[1], row[2], row[3], row[4]])] }

    emit:
    cases      = PREPROCESS.out.case_dir.mix(brats_cases)
    transforms = PREPROCESS.out.transforms.mix(rows.brats.map { row -> [row[0], []] })
    references = rows.dicom.mix(rows.native, rows.brats).map { row -> [row[0], row[6] ?: []] }
}

// A BraTS-space row is used as a case folder: all four images in one folder, named <case_id>_<modality>.
def bratsCaseFolder(case_id, images) {
    def folder = images[0].parent
    def modalities = ['t1', 't1ce', 't2', 'flair']
    images.eachWithIndex { img, i ->
        def ok = img.parent == folder && (img.name.startsWith("${case_id}_${modalities[i]}.nii") || img.name.startsWith("${case_id}-"))
        if (!ok) {
            error("samplesheet row ${case_id}: space=brats images must lie in one folder named ${case_id}_${modalities[i]}.nii.gz (found ${img})")
        }
    }
    return folder
}
